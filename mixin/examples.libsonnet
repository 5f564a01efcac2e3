// The example Prometheus and Alertmanager configs shipped in config/, from the same _config, so the
// job names, the group labels and the inhibit rules always match the alerts.
{
  local c = $._config,

  prometheusConfig:: {
    global: { scrape_interval: '30s', evaluation_interval: '30s' },
    rule_files: ['recording_rules.yml', 'alert_rules.yml'],
    alerting: { alertmanagers: [{ static_configs: [{ targets: ['localhost:9093'] }] }] },
    scrape_configs: [
      // plain job: the exporter probes every target on its own schedule; a scrape reads the latest state
      { job_name: 'apistatus', static_configs: [{ targets: ['localhost:9798'] }] },
      // blackbox style: /probe?target=NAME answers one configured target (instance is the target)
      {
        job_name: 'apistatus-probe',
        metrics_path: '/probe',
        scrape_interval: '60s',
        scrape_timeout: '15s',
        static_configs: [{ targets: ['shop', 'catalogs'] }],
        relabel_configs: [
          { source_labels: ['__address__'], target_label: '__param_target' },
          { source_labels: ['__param_target'], target_label: 'instance' },
          { target_label: '__address__', replacement: 'localhost:9798' },
        ],
      },
    ],
  },

  alertmanagerConfig:: {
    route: {
      receiver: 'chat',
      // one notification per incident: a vendor outage is one group however many targets it hits
      group_by: c.groupLabels + ['alertname', 'vendor'],
      group_wait: c.alertmanager.groupWait,
      group_interval: c.alertmanager.groupInterval,
      repeat_interval: c.alertmanager.repeatInterval,
      routes: [
        // alerts that only inhibit others (ApistatusTargetBehindEgressDown): never sent
        { matchers: ['severity="none"'], receiver: 'null' },
        { matchers: ['severity="critical"'], receiver: 'pager' },
        { matchers: ['severity="warning"'], receiver: 'ticket' },
        // a vendor's announced maintenance is context for the people on call, never a page
        { matchers: ['severity="info"'], receiver: 'chat', repeat_interval: '24h' },
      ],
    },
    receivers: [
      { name: 'pager', webhook_configs: [{ url: 'http://127.0.0.1:5001/pager' }] },
      { name: 'ticket', webhook_configs: [{ url: 'http://127.0.0.1:5001/ticket' }] },
      { name: 'chat', webhook_configs: [{ url: 'http://127.0.0.1:5001/chat' }] },
      { name: 'null' },
    ],
    inhibit_rules: $.alertmanagerInhibitRules,
  },
}
