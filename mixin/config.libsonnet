// Everything a user may want to change, in one place. Override it when importing the mixin:
//   (import 'apistatus-mixin/mixin.libsonnet') + { _config+:: { exporterSelector: 'job="apis"' } }
{
  _config+:: {
    // Series of the targets, from every job that scrapes the exporter: the plain /metrics job and
    // blackbox-style /probe jobs.
    selector: 'job=~"apistatus|apistatus-probe"',
    // The exporter processes themselves (their /metrics scrape): up, reload status, start lag.
    exporterSelector: 'job="apistatus"',
    // blackbox-style jobs that scrape /probe?target=NAME (instance is the target name there).
    probeSelector: 'job="apistatus-probe"',
    // The exporter's address as a browser reaches it (e.g. 'https://apistatus.example'), for the
    // dashboards' links to /targets/NAME. Empty: the instance label of the series, which is the
    // exporter's address for the plain job only (on a /probe job it is the target name).
    exporterURL: '',

    // Labels that tell apart independent deployments (clusters, regions). Alertmanager groups and
    // inhibits within them; dashboards aggregate by them.
    groupLabels: ['cluster'],
    // The dashboards' $cluster variable: shown only when showMultiCluster is true.
    clusterLabel: 'cluster',
    showMultiCluster: false,

    // %s is the alert name in lower case (a Markdown heading anchor of docs/runbook.md).
    runbookURLPattern: 'https://github.com/apistatus-exporter/apistatus-exporter/blob/main/docs/runbook.md#%s',

    // Classes of the vendor catalogs. "down": an outage of the vendor (pages). client_error means our
    // own check no longer fits (a ticket); the others have an alert of their own.
    downClasses: ['server_error', 'timeout', 'network_error', 'unknown'],

    thresholds: {
      quotaLowRatio: 0.1,  // ApistatusQuotaLow below this share left
      clockSkewSeconds: 30,  // Bannersnack refuses at 300 s, Rubiq at 60 min: warn well before
      rateLimitedRatio: 0.5,  // rate limited in more than this share of rateLimitedWindow
      rateLimitedWindow: '15m',
      startLagSeconds: 10,  // mean start lag of probes that says the exporter cannot keep up
      startLagWindow: '5m',
      certExpirySeconds: 14 * 86400,  // ApistatusCertificateExpiringSoon: 14 days
      // ApistatusBudgetDelayingProbes: probes held back by their budget in every such window
      budgetDelayWindow: '15m',
      quotaTrendWindow: '6h',
      quotaTrendHorizon: '24h',
    },

    // Failures in a row (apistatus_consecutive_failures) that make a confirmed failure, which
    // ApistatusTargetDown and ApistatusAuthFailing page on: the failed answer and the one after it.
    confirmedFailures: 2,
    // Of the down classes, those in which no answer came at all, which may be our own egress. Behind
    // an egress with an egress check (apistatus_egress_up) they page on a confirmed failure like the
    // others: the exporter re-runs the checks of that egress on the first transport failure and holds
    // the confirming probe until they have answered, so ApistatusTargetBehindEgressDown sees the
    // egress as it is in the same scrape. Behind an egress with none, only the derived
    // apistatus_egress_suspected_down speaks for it, and it needs several targets to have failed:
    // there they page on one failure more (the next scheduled probe, an interval later), by when
    // every target behind it has been probed since.
    transportClasses: ['timeout', 'network_error'],
    transportConfirmedFailures: 3,

    // `for` of each alert: 5m for a state a person must act on, longer where one answer proves little;
    // none where the state is already confirmed by a second answer (it holds until the next probe:
    // a longer `for` would only delay the page, never screen out a confirmed flake).
    'for': {
      ApistatusTargetDown: '0s',
      ApistatusCheckRejected: '15m',
      ApistatusVendorMaintenance: '1m',
      ApistatusVendorDeclaredMaintenance: '1m',
      // the egress page; its targets' pages are inhibited by ApistatusTargetBehindEgressDown, which
      // must fire before a confirmed ApistatusTargetDown is notified (its for + group_wait): no for
      ApistatusEgressDown: '30s',
      ApistatusTargetBehindEgressDown: '0s',
      ApistatusAuthFailing: '0s',
      ApistatusClockSkew: '5m',
      ApistatusRateLimited: '10m',
      ApistatusQuotaLow: '15m',
      ApistatusQuotaExhaustionPredicted: '30m',
      ApistatusQuotaExceeded: '5m',
      ApistatusProbesStale: '5m',
      ApistatusConfigReloadFailed: '5m',
      ApistatusExporterAbsent: '5m',
      ApistatusExporterOverloaded: '10m',
      ApistatusProbeScrapeFailed: '5m',
      ApistatusCertificateExpiringSoon: '1h',
      ApistatusBudgetDelayingProbes: '30m',
      ApistatusErrorBudgetBurnFast: '2m',
      ApistatusErrorBudgetBurnSlow: '15m',
    },
    // Held after the maintenance ends: vendors often answer with errors on their way back.
    maintenanceKeepFiringFor: '15m',
    // ApistatusTargetBehindEgressDown is held this long after the egress is back: its targets' own
    // alerts resolve meanwhile (their next probes), instead of paging in the moment between the two.
    egressKeepFiringFor: '5m',
    // Least stale time the next probe may be overdue by (the target's own spacing when larger).
    staleMinSeconds: 60,

    // Availability SLO per target: the share of samples in which the vendor was not down, among
    // those in which it did not say it was in maintenance.
    slo: {
      objective: 0.99,
      // multi-window, multi-burn-rate (a factor of 14.4 spends 2% of a 30-day budget in an hour).
      // A window pair only counts once Prometheus holds history from the oldest twelfth of the long
      // window: a fresh Prometheus (or a new target) never pages on a few minutes of data.
      fast: [{ long: '1h', short: '5m', factor: 14.4 }, { long: '6h', short: '30m', factor: 6 }],
      slow: [{ long: '1d', short: '2h', factor: 3 }, { long: '3d', short: '6h', factor: 1 }],
    },

    // Alertmanager (the shipped example): how alerts group into notifications.
    alertmanager: {
      groupWait: '30s',
      groupInterval: '5m',
      repeatInterval: '4h',
    },

    dashboards: {
      prefix: 'apistatus-exporter / ',
      tags: ['apistatus-exporter'],
      refresh: '30s',
      timezone: 'browser',
      time: 'now-6h',
      // where a target's page lives (the overview table's link): exporterURL when set, else the
      // instance label, which is the exporter's address on the plain job
      targetPageURL: (if $._config.exporterURL != '' then $._config.exporterURL else 'http://${__data.fields.instance}')
                     + '/targets/${__value.raw}',
    },
  },
}
