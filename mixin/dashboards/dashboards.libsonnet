// Grafana dashboards: an overview of every target with the exporters' own health, and a drill-down
// of one target. Every query filters on $job and $instance (and $cluster) and keeps job in its
// aggregation, so a /probe job beside the plain one, or several shards, never blend into one line.
local g = import '../lib/grafana.libsonnet';

{
  local c = $._config,
  local d = c.dashboards,
  local runbook(name) = g.link('Runbook: ' + name, c.runbookURLPattern % std.asciiLower(name)),
  local clusterMatcher = if c.showMultiCluster then ',%s=~"$cluster"' % c.clusterLabel else '',
  local fleet = c.selector + clusterMatcher + ',job=~"$job",instance=~"$instance"',
  local exporters = c.exporterSelector + clusterMatcher + ',job=~"$job",instance=~"$instance"',
  local classes = [
    ['ok', 'green'], ['degraded', 'yellow'], ['processing', 'blue'], ['maintenance', 'purple'],
    ['auth', 'orange'], ['clock_skew', 'orange'], ['rate_limited', 'yellow'], ['quota_exceeded', 'dark-orange'],
    ['client_error', 'red'], ['server_error', 'dark-red'], ['timeout', 'red'], ['network_error', 'red'],
    ['unknown', 'text'],
  ],
  local keep = if c.showMultiCluster then c.clusterLabel + ', job' else 'job',
  local probeJobs = c.probeSelector + clusterMatcher + ',job=~"$job"',
  // seconds left before a certificate expires: red within a week, orange within the alert's threshold
  local certSteps = [{ color: 'red', value: null }, { color: 'orange', value: 7 * 86400 },
                     { color: 'green', value: c.thresholds.certExpirySeconds }],

  local variables(targetMulti) =
    (if c.showMultiCluster then [g.variable('cluster', 'Cluster', 'label_values(apistatus_up{%s}, %s)' % [c.selector, c.clusterLabel])] else [])
    + [
      g.variable('job', 'Job', 'label_values(apistatus_up{%s}, job)' % (c.selector + clusterMatcher)),
      g.variable('instance', 'Instance', 'label_values(apistatus_up{%s}, instance)' % (c.selector + clusterMatcher + ',job=~"$job"')),
      g.variable('vendor', 'Vendor', 'label_values(apistatus_up{%s}, vendor)' % fleet),
      g.variable('target', 'Target', 'label_values(apistatus_up{%s,vendor=~"$vendor"}, target)' % fleet, multi=targetMulti),
    ],

  // the class of each target as a number (mapped back to its name by the panel)
  local classTimeline(title, description, sel) = g.panel('state-timeline', title, description, [
    g.target('max by (%s, target) (%s)' % [keep, std.join(' or ', [
      '(apistatus_outcome{%s,class="%s"} == 1) * %d' % [sel, classes[i][0], i]
      for i in std.range(0, std.length(classes) - 1)
    ])], '{{target}} ({{job}})'),
  ], w=24, h=9) {
    fieldConfig+: { defaults+: {
      mappings: g.valueMap({ [std.toString(i)]: { text: classes[i][0], color: classes[i][1] } for i in std.range(0, std.length(classes) - 1) }),
      custom: { fillOpacity: 80, lineWidth: 0 },
    } },
    options: { showValue: 'never', mergeValues: true, alignValue: 'left', rowHeight: 0.9,
               legend: { showLegend: false, displayMode: 'list', placement: 'bottom' }, tooltip: { mode: 'single', sort: 'none' } },
  },
  local upMap = g.valueMap({ '0': { text: 'DOWN', color: 'red' }, '1': { text: 'UP', color: 'green' } }),
  local redGreen = [{ color: 'red', value: null }, { color: 'green', value: 1 }],
  // Is it us or them: the vendor's own status page (per target: what it declares on the components
  // the target watches, 2 an incident, 1 a maintenance, 0 operational) and our egress
  local vendorWord(sel) = '2 * max by (%(k)s, target) (apistatus_vendor_incident_active{%(s)s}) + max by (%(k)s, target) (apistatus_vendor_maintenance{%(s)s})' % { k: keep, s: sel },
  local vendorMap = g.valueMap({ '0': { text: 'operational', color: 'green' }, '1': { text: 'MAINTENANCE', color: 'purple' },
                                 '2': { text: 'INCIDENT', color: 'red' }, '3': { text: 'INCIDENT', color: 'red' } }),
  local vendorSteps = [{ color: 'green', value: null }, { color: 'purple', value: 1 }, { color: 'red', value: 2 }],
  local vendorSel = exporters + ',vendor=~"$vendor"',

  local overviewSel = fleet + ',vendor=~"$vendor",target=~"$target"',
  local overview = g.dashboard(
    'apistatus-overview', 'Overview',
    'Every third-party API target probed by apistatus-exporter: class, availability, maintenance, credentials, quotas, rate limits, latency, and the exporters\' own health.',
    d, variables(true),
    [
      g.row('Is it us or them?'),
      g.stat('Our egress', 'Each egress of the exporters: DOWN when an egress check fails or most targets behind it fail at the transport level at once across three vendors (ApistatusEgressDown pages once and mutes the vendors\' network-error and timeout alerts behind it).',
             [g.target('1 - max by (%s, egress) (apistatus_egress_suspected_down{%s} or (1 - apistatus_egress_up{%s}))' % [keep, exporters, exporters], '{{egress}} ({{job}})', instant=true)],
             upMap, redGreen, w=8) { links: [runbook('ApistatusEgressDown')] },
      g.stat('What the vendor says', 'What each vendor\'s own status page declares on the components each target watches (status_components): an incident, a maintenance, or operational. Beside the class we measure: DOWN here and operational there means the vendor may not know yet.',
             [g.target(vendorWord(fleet + ',vendor=~"$vendor",target=~"$target"'), '{{target}} ({{job}})', instant=true)],
             vendorMap, vendorSteps, w=16) { links: [runbook('ApistatusTargetDown'), runbook('ApistatusVendorDeclaredMaintenance')] },
      g.panel('table', 'Incidents and maintenances the vendors declare', 'Unresolved incidents and scheduled or running maintenances on the vendors\' own status pages, with whether the last read of each page worked.', [
        g.target('max by (%s, vendor, name, impact, status) (apistatus_vendor_incident_info{%s})' % [keep, vendorSel], instant=true, format='table'),
        g.target('max by (%s, vendor, name, status) (apistatus_vendor_maintenance_info{%s})' % [keep, vendorSel], instant=true, format='table'),
      ], w=16, h=6) {
        options: { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], countRows: false, fields: '' } },
        transformations: [{ id: 'merge', options: {} }, { id: 'organize', options: { excludeByName: { Time: true, 'Value #A': true, 'Value #B': true } } }],
      },
      g.stat('Status page read', 'Whether the last read of each vendor\'s status page worked (one conditional request a minute at most).',
             [g.target('max by (%s, vendor) (apistatus_vendor_status_fetch_success{%s})' % [keep, vendorSel], '{{vendor}}', instant=true)],
             g.valueMap({ '0': { text: 'FAILED', color: 'orange' }, '1': { text: 'ok', color: 'green' } }),
             [{ color: 'orange', value: null }, { color: 'green', value: 1 }], w=8, h=6),
      g.row('Targets'),
      classTimeline('Class of each target over time',
                    'The class of the last answer of each target (classes: %s).' % std.join(', ', [k[0] for k in classes]), overviewSel),
      g.stat('Up', '1 when the last answer was ok, degraded or processing.',
             [g.target('max by (%s, target) (apistatus_up{%s})' % [keep, overviewSel], '{{target}} ({{job}})', instant=true)],
             upMap, redGreen) { links: [runbook('ApistatusTargetDown')] },
      g.stat('In maintenance', '1 when the vendor says it is in maintenance: no page, the outage alerts are inhibited.',
             [g.target('max by (%s, target) (apistatus_maintenance{%s})' % [keep, overviewSel], '{{target}} ({{job}})', instant=true)],
             g.valueMap({ '0': { text: 'no', color: 'green' }, '1': { text: 'MAINTENANCE', color: 'purple' } }),
             [{ color: 'green', value: null }, { color: 'purple', value: 1 }]) { links: [runbook('ApistatusVendorMaintenance')] },
      g.timeseries('Auth failures', 'Answers refusing our credentials, by vendor code: credentials need checking or rotating.',
                   [g.target('sum by (%s, target, code) (increase(apistatus_auth_failures_total{%s}[$__rate_interval]))' % [keep, overviewSel],
                             '{{target}} {{code}} ({{job}})')]) { links: [runbook('ApistatusAuthFailing')] },
      g.panel('bargauge', 'Quota remaining', 'Share of each quota left, as the vendor reports it. Informational quotas (not needed by the health check) warn but never page.',
              [g.target('max by (%s, target, quota) (apistatus_quota_remaining{%s}) / max by (%s, target, quota) (apistatus_quota_limit{%s} > 0)'
                        % [keep, overviewSel, keep, overviewSel], '{{target}} {{quota}} ({{job}})', instant=true)]) {
        fieldConfig+: { defaults+: { unit: 'percentunit', min: 0, max: 1, thresholds: { mode: 'absolute', steps: [
          { color: 'red', value: null }, { color: 'orange', value: c.thresholds.quotaLowRatio }, { color: 'green', value: 0.25 },
        ] } } },
        options: { orientation: 'horizontal', displayMode: 'gradient', showUnfilled: true,
                   reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false } },
        links: [runbook('ApistatusQuotaLow'), runbook('ApistatusQuotaExceeded')],
      },
      g.timeseries('Rate limited (share of time)', 'Share of the time the last answer was a rate-limit refusal. The probes share the vendor\'s budget with production traffic.',
                   [g.target('max by (%s, target) (avg_over_time(apistatus_outcome{%s,class="rate_limited"}[$__rate_interval]))' % [keep, overviewSel],
                             '{{target}} ({{job}})')], 'percentunit') { links: [runbook('ApistatusRateLimited')] },
      g.timeseries('Latency p50 / p95', 'Duration of a probe, all attempts and logins included.', [
        g.target('histogram_quantile(0.5, sum by (%s, target, le) (rate(apistatus_request_duration_seconds_bucket{%s}[$__rate_interval])))' % [keep, overviewSel], 'p50 {{target}} ({{job}})'),
        g.target('histogram_quantile(0.95, sum by (%s, target, le) (rate(apistatus_request_duration_seconds_bucket{%s}[$__rate_interval])))' % [keep, overviewSel], 'p95 {{target}} ({{job}})'),
      ], 's'),
      g.timeseries('Answers by class', 'Probe answers and failed attempts per second, by class.',
                   [g.target('sum by (%s, class) (rate(apistatus_responses_total{%s}[$__rate_interval]))' % [keep, overviewSel], '{{class}} ({{job}})')], 'reqps'),
      g.timeseries('Availability error budget burn rate (%s)' % c.slo.fast[0].long,
                   'How many times faster than allowed the availability budget is spent (maintenance not counted). Needs the recording rules. The fast-burn alert fires above %g.' % c.slo.fast[0].factor,
                   [g.target('max by (%s, target) (target:apistatus_slo_burn_rate:avg%s{%s})' % [keep, c.slo.fast[0].long, overviewSel], '{{target}} ({{job}})')]) {
        links: [runbook('ApistatusErrorBudgetBurnFast'), runbook('ApistatusErrorBudgetBurnSlow')],
      },
      g.panel('table', 'Current state', 'The class of each target\'s last answer, the failed probes in a row and the time left before the vendor\'s TLS certificate expires (empty for plain HTTP). Click a target for its drill-down or its page on the exporter (plain job: the instance is the exporter\'s address).', [
        g.target('max by (%s, instance, target, vendor, class) (apistatus_outcome{%s} == 1)' % [keep, overviewSel], instant=true, format='table'),
        g.target('max by (%s, instance, target, vendor) (apistatus_consecutive_failures{%s})' % [keep, overviewSel], instant=true, format='table'),
        // empty for a plain-HTTP target
        g.target('max by (%s, instance, target, vendor) (apistatus_tls_cert_expiry_timestamp_seconds{%s}) - time()' % [keep, overviewSel], instant=true, format='table'),
      ], w=24, h=8) {
        fieldConfig+: { overrides: [{
          matcher: { id: 'byName', options: 'target' },
          properties: [{ id: 'links', value: [
            { title: 'Drill down', url: '/d/apistatus-target/apistatus-exporter-target?${datasource:queryparam}&var-job=${__data.fields.job}&var-instance=${__data.fields.instance}&var-vendor=${__data.fields.vendor}&var-target=${__value.raw}&${__url_time_range}' },
            { title: 'Target page on the exporter', url: d.targetPageURL, targetBlank: true },
          ] }],
        }, {
          matcher: { id: 'byName', options: 'certificate expires in' },
          properties: [{ id: 'unit', value: 's' }, { id: 'thresholds', value: { mode: 'absolute', steps: certSteps } },
                       { id: 'custom.cellOptions', value: { type: 'color-text' } },
                       { id: 'links', value: [{ title: 'Runbook: ApistatusCertificateExpiringSoon', url: c.runbookURLPattern % 'apistatuscertificateexpiringsoon', targetBlank: true }] }],
        }] },
        options: { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], countRows: false, fields: '' } },
        transformations: [
          { id: 'merge', options: {} },
          { id: 'organize', options: { excludeByName: { Time: true, 'Value #A': true }, renameByName: { 'Value #B': 'failures in a row', 'Value #C': 'certificate expires in' } } },
        ],
      },
      g.row('Exporter health'),
      g.stat('Exporter up (per replica)', 'Whether Prometheus scrapes each exporter replica.',
             [g.target('up{%s}' % exporters, '{{instance}} ({{job}})', instant=true)], upMap, redGreen, w=8) { links: [runbook('ApistatusExporterAbsent')] },
      g.stat('Config reload', 'Whether the last config reload of each replica succeeded (the old config keeps running when it did not).',
             [g.target('apistatus_config_last_reload_successful{%s}' % exporters, '{{instance}}', instant=true)],
             g.valueMap({ '0': { text: 'FAILED', color: 'red' }, '1': { text: 'ok', color: 'green' } }), redGreen, w=8) { links: [runbook('ApistatusConfigReloadFailed')] },
      g.stat('Targets per replica', 'Targets in the running config of each replica.',
             [g.target('apistatus_targets{%s}' % exporters, '{{instance}}', instant=true)], w=8),
      g.timeseries('Probe start lag', 'How late probes start against their plan, mean over the interval and p90 of recent probes: the first sign that a replica cannot keep up.', [
        g.target('rate(apistatus_probe_start_lag_seconds_sum{%s}[$__rate_interval]) / rate(apistatus_probe_start_lag_seconds_count{%s}[$__rate_interval])' % [exporters, exporters], 'mean {{instance}}'),
        g.target('apistatus_probe_start_lag_seconds{%s,quantile="0.9"}' % exporters, 'p90 {{instance}}'),
      ], 's') { links: [runbook('ApistatusExporterOverloaded')] },
      g.timeseries('Probes started', 'Probes each replica starts per second.', [
        g.target('rate(apistatus_probe_start_lag_seconds_count{%s}[$__rate_interval])' % exporters, '{{instance}}'),
      ], 'ops'),
      g.timeseries('Probes in flight', 'Probes each replica has started and not finished, those waiting for a place under max_concurrency included: at max_concurrency for long, slow vendors hold every place.', [
        g.target('apistatus_probes_in_flight{%s}' % exporters, '{{instance}}'),
      ]) { links: [runbook('ApistatusExporterOverloaded')] },
      g.timeseries('Probes held back by request budgets', 'Per vendor, how often a probe had to wait because its credential\'s request budget (its probe_share) was spent: targets sharing a credential ask for more than it allows (--check-config warns).', [
        g.target('rate(apistatus_budget_delays_total{%s}[$__rate_interval])' % exporters, '{{vendor}} on {{instance}}'),
      ], 'ops') { links: [runbook('ApistatusBudgetDelayingProbes')] },
      g.timeseries('/probe scrapes', 'Whether each /probe scrape succeeds (0: unknown target or timeout).', [
        g.target('up{%s}' % probeJobs, '{{instance}} ({{job}})'),
      ]) { links: [runbook('ApistatusProbeScrapeFailed')] },
      g.timeseries('/probe answered from cache', 'Share of the /probe scrapes of each target answered from its latest result (the schedule, a backoff or the budget allowed no probe then) rather than by a probe made for the scrape.', [
        g.target('avg_over_time(apistatus_probe_cached{%s}[$__rate_interval])' % probeJobs, '{{instance}} ({{job}})'),
      ], 'percentunit'),
      g.timeseries('Scrape duration', 'How long Prometheus takes to scrape each replica.', [
        g.target('scrape_duration_seconds{%s}' % exporters, '{{instance}}'),
      ], 's', w=24),
    ],
    [g.link('Target drill-down', '/d/apistatus-target/apistatus-exporter-target', false) { icon: 'dashboard', includeVars: true, keepTime: true }],
  ),

  local targetSel = fleet + ',vendor=~"$vendor",target="$target"',
  local drill = g.dashboard(
    'apistatus-target', 'Target',
    'One target of apistatus-exporter in detail: codes, latency, Retry-After, quota, clock skew.',
    d, variables(false),
    [
      classTimeline('Class over time', 'The class of each answer (%s).' % std.join(', ', [k[0] for k in classes]), targetSel),
      g.stat('Target', 'The target on each job and replica; click for its page on the exporter (plain job).',
             [g.target('max by (%s, instance, target) (apistatus_up{%s})' % [keep, targetSel], '{{target}} on {{instance}} ({{job}})', instant=true)],
             upMap, redGreen, w=24, h=4) {
        fieldConfig+: { defaults+: { links: [{ title: 'Target page on the exporter', url: (if c.exporterURL != '' then c.exporterURL else 'http://${__field.labels.instance}') + '/targets/${__field.labels.target}', targetBlank: true }] } },
        links: [runbook('ApistatusTargetDown')],
      },
      g.timeseries('Ours beside the vendor\'s word', 'Our check (1 up, 0 down) beside what the vendor\'s own status page declares on the components this target watches (2 an incident, 1 a maintenance, 0 operational).', [
        g.target('max by (%s) (apistatus_up{%s})' % [keep, targetSel], 'our check ({{job}})'),
        g.target(vendorWord(targetSel), 'the vendor says ({{job}})', refId='B'),
      ], w=24) { links: [runbook('ApistatusTargetDown'), runbook('ApistatusVendorDeclaredMaintenance')] },
      g.timeseries('Codes over time', 'Answers by class and vendor code.',
                   [g.target('sum by (%s, class, code) (increase(apistatus_responses_total{%s}[$__rate_interval]))' % [keep, targetSel], '{{class}} {{code}} ({{job}})')]),
      g.timeseries('Latency', 'Duration of a probe, all attempts included.', [
        g.target('histogram_quantile(0.5, sum by (%s, le) (rate(apistatus_request_duration_seconds_bucket{%s}[$__rate_interval])))' % [keep, targetSel], 'p50 ({{job}})'),
        g.target('histogram_quantile(0.95, sum by (%s, le) (rate(apistatus_request_duration_seconds_bucket{%s}[$__rate_interval])))' % [keep, targetSel], 'p95 ({{job}})'),
        g.target('sum by (%s) (rate(apistatus_request_duration_seconds_sum{%s}[$__rate_interval])) / sum by (%s) (rate(apistatus_request_duration_seconds_count{%s}[$__rate_interval]))' % [keep, targetSel, keep, targetSel], 'mean ({{job}})'),
      ], 's'),
      g.timeseries('Retry-After and backoff', 'The vendor\'s Retry-After and the exporter\'s extra wait.', [
        g.target('max by (%s) (apistatus_retry_after_seconds{%s})' % [keep, targetSel], 'Retry-After ({{job}})'),
        g.target('max by (%s) (apistatus_backoff_seconds{%s})' % [keep, targetSel], 'backoff ({{job}})'),
      ], 's') { links: [runbook('ApistatusRateLimited')] },
      g.timeseries('Quota', 'Quota remaining and limit as the vendor reports them.', [
        g.target('max by (%s, quota) (apistatus_quota_remaining{%s})' % [keep, targetSel], 'remaining {{quota}} ({{job}})'),
        g.target('max by (%s, quota) (apistatus_quota_limit{%s})' % [keep, targetSel], 'limit {{quota}} ({{job}})'),
      ]) { links: [runbook('ApistatusQuotaLow'), runbook('ApistatusQuotaExceeded')] },
      g.timeseries('Clock skew', 'The vendor\'s Date header minus our clock.',
                   [g.target('max by (%s) (apistatus_clock_skew_seconds{%s})' % [keep, targetSel], '{{job}}')], 's') { links: [runbook('ApistatusClockSkew')] },
      g.timeseries('HTTP status', 'HTTP status of the last answer (0: no answer).',
                   [g.target('max by (%s) (apistatus_http_status_code{%s})' % [keep, targetSel], '{{job}}')]),
      g.stat('Failures in a row', 'Probes in a row whose class is not up.',
             [g.target('max by (%s) (apistatus_consecutive_failures{%s})' % [keep, targetSel], '{{job}}', instant=true)], w=6),
      g.stat('Last probe', 'Time since the last probe started.',
             [g.target('time() - max by (%s) (apistatus_last_probe_timestamp_seconds{%s})' % [keep, targetSel], '{{job}}', instant=true)], unit='s', w=6),
      g.stat('Next probe in', 'Time until the next planned probe (negative: overdue).',
             [g.target('max by (%s) (apistatus_next_probe_timestamp_seconds{%s} > 0) - time()' % [keep, targetSel], '{{job}}', instant=true)], unit='s', w=6) {
        links: [runbook('ApistatusProbesStale')],
      },
      g.stat('TLS certificate expires in', 'Time left before the earliest notAfter of the certificates the vendor presented on the last TLS handshake (no value for plain HTTP).',
             [g.target('max by (%s) (apistatus_tls_cert_expiry_timestamp_seconds{%s}) - time()' % [keep, targetSel], '{{job}}', instant=true)],
             steps=certSteps, unit='s', w=6) { links: [runbook('ApistatusCertificateExpiringSoon')] },
    ],
    [g.link('Overview', '/d/apistatus-overview/apistatus-exporter-overview', false) { icon: 'dashboard', includeVars: true, keepTime: true }],
  ),

  grafanaDashboards+:: {
    'apistatus-overview.json': overview,
    'apistatus-target.json': drill,
  },
}
