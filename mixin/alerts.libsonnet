// Alerts. Each has severity (critical pages, warning is a ticket or chat, info is context), a
// summary, a description naming what it is about, and runbook_url (docs/runbook.md). Each incident
// pages once: secondary symptoms are muted by the inhibit rules below (alertmanagerInhibitRules).
local util = import 'lib/util.libsonnet';

{
  local c = $._config,
  local sel = c.selector,
  local alert(name, severity, expr, summary, description, extra={}) = {
    alert: name,
    expr: expr,
    'for': c['for'][name],
    labels: { severity: severity },
    annotations: {
      summary: summary,
      description: description,
      runbook_url: c.runbookURLPattern % std.asciiLower(name),
    },
  } + extra,
  local onTarget = '{{ $labels.target }} ({{ $labels.vendor }})',
  // A failure that pages is a confirmed one: the answer after it failed too (with confirm_failures a
  // second probe right away, within the interval, else the next scheduled probe). One answer that
  // fails (the transient 503, the dropped connection) never reaches 2, so the `for` can be short.
  local confirmed(expr, n=c.confirmedFailures) = '%s\nand\napistatus_consecutive_failures{%s} >= %d' % [expr, sel, n],
  local outageClasses = [k for k in c.downClasses if !std.member(c.transportClasses, k)],
  local transportClasses = [k for k in c.downClasses if std.member(c.transportClasses, k)],
  local down(classes) = 'max without (class) (apistatus_outcome{%s,class=~"%s"}) == 1' % [sel, util.classes(classes)],
  // The targets whose egress has an egress check (its apistatus_egress_up series exists): the exporter
  // re-checks it before it confirms a transport failure, so their egress signal is never behind.
  local egressChecked =
    'max by (%(tv)s) (\n  apistatus_target_egress_info{%(exp)s}\n  and on (%(e)s)\n  apistatus_egress_up{%(exp)s}\n)' % {
      tv: std.join(', ', c.groupLabels + ['target', 'vendor']), e: std.join(', ', c.groupLabels + ['egress']),
      exp: c.exporterSelector },
  // Is it us or them: what the vendor's own status page says about what the target depends on, as an
  // annotation (information on the page, never a second one). Empty when the vendor has no status page.
  local q(metric, cond) = 'printf `%s{target="%%s",vendor="%%s"}%s` $labels.target $labels.vendor | query' % [metric, cond],
  local onVendor(metric, cond) = 'printf `%s{vendor="%%s"}%s` $labels.vendor | query' % [metric, cond],
  local vendorSays =
    '{{ with %s }}The vendor confirms an incident: ' % q('apistatus_vendor_incident_active', ' == 1') +
    '{{ range %s }}{{ .Labels.name }} ({{ .Labels.impact }}, {{ .Labels.status }}); {{ end }}' % onVendor('apistatus_vendor_incident_info', '') +
    '{{ range %s }}{{ .Labels.name }} is not operational; {{ end }}' % onVendor('apistatus_vendor_component_status', ' > 0') +
    '{{ else }}{{ with %s }}The vendor declares a maintenance.' % q('apistatus_vendor_maintenance', ' == 1') +
    '{{ else }}{{ with %s }}The vendor reports operational: it declares no incident on what this target uses.' % q('apistatus_vendor_incident_active', ' == 0') +
    '{{ else }}No status page of the vendor speaks for this target.{{ end }}{{ end }}{{ end }}',
  local g0 = c.groupLabels,
  local by(labels) = std.join(', ', g0 + labels),
  // a burn-rate window pair, with its history guard: data from the oldest twelfth of the long window
  local burn(w) =
    local long = util.seconds(w.long);
    |||
      (
        target:apistatus_slo_burn_rate:avg%(long)s > %(f)g
        and target:apistatus_slo_burn_rate:avg%(short)s > %(f)g
        and present_over_time(apistatus_up{%(sel)s}[%(guard)s] offset %(offset)s)
      )
    ||| % { long: w.long, short: w.short, f: w.factor, sel: sel,
            guard: util.duration(long / 12), offset: util.duration(long - long / 12) },
  local burnExpr(pairs) = std.join('or\n', [burn(w) for w in pairs]),
  local describe(pairs) = std.join(', or ', ['%g over %s and %s' % [w.factor, w.long, w.short] for w in pairs]),

  prometheusAlerts+:: {
    groups+: [{
      name: 'apistatus.alerts',
      rules: [
        // Transport failures: on a confirmed failure behind an egress with a check (re-checked before
        // the confirmation), on one more behind an egress without one (see transportConfirmedFailures).
        alert('ApistatusTargetDown', 'critical',
              '(\n%s\n)\nor\n(\n(\n%s\n)\nand on (%s)\n%s\n)\nor\n(\n%s\n)' % [
                confirmed(down(outageClasses)),
                confirmed(down(transportClasses)), by(['target', 'vendor']), egressChecked,
                confirmed(down(transportClasses), c.transportConfirmedFailures)],
              onTarget + ' is down',
              ('The health check of {{ $labels.target }} ({{ $labels.vendor }}) has ended in %s, confirmed by the ' +
               'probe after it (a %s only once the egress it goes out through has been checked again, or by one ' +
               'more probe behind an egress without an egress check, so that an outage of our own egress is ' +
               'known first), and the vendor does not say it is in maintenance.')
              % [std.join(', ', c.downClasses), std.join(' or ', transportClasses)],
              { annotations+: { vendor_status: vendorSays } }),

        alert('ApistatusCheckRejected', 'warning',
              'max without (class) (apistatus_outcome{%s,class="client_error"}) == 1' % sel,
              "{{ $labels.vendor }} rejects the health check of {{ $labels.target }}: the check no longer fits",
              ('{{ $labels.vendor }} has answered the health check of {{ $labels.target }} with a client error ' +
               '(not found, bad parameters, redirect) for %s. The API answers; the check in the exporter\'s ' +
               'config no longer fits and needs fixing by the team that owns it.') % c['for'].ApistatusCheckRejected),

        alert('ApistatusVendorMaintenance', 'info',
              'apistatus_maintenance{%s} == 1' % sel,
              '{{ $labels.vendor }} says {{ $labels.target }} is in maintenance',
              ('{{ $labels.vendor }} answers the health check of {{ $labels.target }} with its maintenance ' +
               'code. Outage alerts for this target are inhibited until %s after it ends.') % c.maintenanceKeepFiringFor,
              { keep_firing_for: c.maintenanceKeepFiringFor }),

        // The vendor's own status page declares a maintenance in progress on a component the target
        // watches while its check fails with a server error or a timeout: the outage alerts of that
        // target are inhibited (context for chat, never a page).
        alert('ApistatusVendorDeclaredMaintenance', 'info',
              |||
                apistatus_vendor_maintenance{%(sel)s} == 1
                and on (%(on)s)
                (max without (class) (apistatus_outcome{%(sel)s,class=~"server_error|timeout"}) == 1)
              ||| % { sel: sel, on: by(['target', 'vendor']) },
              '{{ $labels.vendor }} declares a maintenance on what {{ $labels.target }} depends on',
              ('The status page of {{ $labels.vendor }} declares a maintenance in progress on a component ' +
               '{{ $labels.target }} watches, and its health check fails with a server error or a timeout. Its ' +
               'outage alerts are inhibited until %s after the maintenance.') % c.maintenanceKeepFiringFor,
              { keep_firing_for: c.maintenanceKeepFiringFor }),

        // Our own way out: every egress check of it fails, or most targets behind it fail at the
        // transport level across at least three vendors at once (the exporter derives that signal).
        alert('ApistatusEgressDown', 'critical',
              |||
                (max by (%(by)s) (apistatus_egress_up{%(sel)s}) == 0)
                or
                (max by (%(by)s) (apistatus_egress_suspected_down{%(sel)s}) == 1)
              ||| % { sel: c.exporterSelector, by: by(['egress']) },
              'Our egress {{ $labels.egress }} is down: it is us, not the vendors',
              ('The egress {{ $labels.egress }} of apistatus-exporter is down: its egress checks fail, or most ' +
               'targets behind it fail at the transport level across at least three vendors at once. The vendor ' +
               'alerts for network errors and timeouts behind it are inhibited: check the proxy, firewall, DNS ' +
               'and NAT first.')),

        // A target that fails at the transport level behind an egress that is down: the cause is ours
        // (ApistatusEgressDown pages once). Severity none: it is routed nowhere; it only inhibits.
        alert('ApistatusTargetBehindEgressDown', 'none',
              |||
                (max without (class) (apistatus_outcome{%(sel)s,class=~"network_error|timeout"}) == 1)
                and on (%(tv)s)
                (
                  max by (%(tve)s) (apistatus_target_egress_info{%(exp)s})
                  * on (%(e)s) group_left ()
                  (
                    (max by (%(e)s) (apistatus_egress_up{%(exp)s}) == 0)
                    or
                    (max by (%(e)s) (apistatus_egress_suspected_down{%(exp)s}) == 1)
                  )
                )
              ||| % { sel: sel, exp: c.exporterSelector, tv: by(['target', 'vendor']),
                      tve: by(['target', 'vendor', 'egress']), e: by(['egress']) },
              '{{ $labels.target }} ({{ $labels.vendor }}) is unreachable behind an egress that is down',
              'The health check of {{ $labels.target }} ({{ $labels.vendor }}) fails at the transport level while the egress it goes ' +
              'out through is down (ApistatusEgressDown): its outage alerts are inhibited.',
              { keep_firing_for: c.egressKeepFiringFor }),

        alert('ApistatusAuthFailing', 'critical',
              confirmed('max without (class) (apistatus_outcome{%s,class="auth"}) == 1' % sel),
              '{{ $labels.vendor }} refuses the credentials of {{ $labels.target }}',
              ('{{ $labels.vendor }} has refused the credentials, signature or token of {{ $labels.target }}, ' +
               'confirmed by the probe after it. The API itself answers: the credentials need checking or rotating.')),

        alert('ApistatusClockSkew', 'warning',
              |||
                (max without (class) (apistatus_outcome{%(sel)s,class="clock_skew"}) == 1)
                or
                (abs(apistatus_clock_skew_seconds{%(sel)s}) > %(t)g)
              ||| % { sel: sel, t: c.thresholds.clockSkewSeconds },
              'Clock skew between this host and {{ $labels.vendor }} ({{ $labels.target }})',
              ('{{ $labels.vendor }} refuses the signed requests of {{ $labels.target }} as out of their ' +
               'time window, or its Date header is more than %g s from our clock.') % c.thresholds.clockSkewSeconds),

        alert('ApistatusRateLimited', 'warning',
              'max without (class) (avg_over_time(apistatus_outcome{%s,class="rate_limited"}[%s])) > %g'
              % [sel, c.thresholds.rateLimitedWindow, c.thresholds.rateLimitedRatio],
              '{{ $labels.vendor }} keeps rate limiting {{ $labels.target }}',
              ('{{ $labels.vendor }} has rate limited the health check of {{ $labels.target }} for ' +
               '{{ $value | humanizePercentage }} of the last %s. The probe shares the API key\'s budget ' +
               'with production traffic.') % c.thresholds.rateLimitedWindow),

        alert('ApistatusQuotaLow', 'warning',
              'target:apistatus_quota_remaining:ratio{%s} < %g' % [sel, c.thresholds.quotaLowRatio],
              'Quota {{ $labels.quota }} of ' + onTarget + ' is low',
              'Only {{ $value | humanizePercentage }} of the {{ $labels.quota }} quota of ' + onTarget + ' is left.'),

        // Linear trend, extrapolated to the vendor's reset time when it reports one (predict_linear at 0
        // is the trend's value now, deriv its slope), else quotaTrendHorizon ahead.
        alert('ApistatusQuotaExhaustionPredicted', 'warning',
              |||
                (
                  (
                    predict_linear(apistatus_quota_remaining{%(sel)s}[%(w)s], 0)
                    + deriv(apistatus_quota_remaining{%(sel)s}[%(w)s]) * (apistatus_quota_reset_timestamp_seconds{%(sel)s} - time())
                  ) < 0
                  or
                  (predict_linear(apistatus_quota_remaining{%(sel)s}[%(w)s], %(h)d) < 0 unless apistatus_quota_reset_timestamp_seconds{%(sel)s})
                )
                and apistatus_quota_remaining{%(sel)s} > 0
              ||| % { sel: sel, w: c.thresholds.quotaTrendWindow, h: util.seconds(c.thresholds.quotaTrendHorizon) },
              'Quota {{ $labels.quota }} of ' + onTarget + ' will run out before it resets',
              ('At the rate of the last %s the {{ $labels.quota }} quota of ' + onTarget + ' runs out before it ' +
               'resets (or within %s when the vendor does not say when it resets).')
              % [c.thresholds.quotaTrendWindow, c.thresholds.quotaTrendHorizon]),

        // A quota the catalog marks as informational (apistatus_quota_informational 1) is not needed
        // by the health check: at zero it warns (QuotaLow), it never pages.
        alert('ApistatusQuotaExceeded', 'critical',
              |||
                (max without (class) (apistatus_outcome{%(sel)s,class="quota_exceeded"}) == 1)
                or
                min without (quota) (
                  (apistatus_quota_remaining{%(sel)s} <= 0)
                  unless (apistatus_quota_informational{%(sel)s} == 1)
                )
              ||| % { sel: sel },
              'A quota of ' + onTarget + ' is used up',
              '{{ $labels.vendor }} refuses calls of {{ $labels.target }} because a quota is used up, or ' +
              'reports a quota the health check needs at zero. Calls of that kind fail until it resets.'),

        // The planned next probe is overdue by more than the target's own spacing (at least
        // staleMinSeconds). A target in a long Retry-After backoff has its next probe far ahead, so it
        // is not stale. A target never planned (0) is left out.
        alert('ApistatusProbesStale', 'warning',
              |||
                (time() - apistatus_next_probe_timestamp_seconds{%(sel)s})
                > clamp_min(apistatus_next_probe_timestamp_seconds{%(sel)s} - apistatus_last_probe_timestamp_seconds{%(sel)s}, %(min)d)
                and apistatus_next_probe_timestamp_seconds{%(sel)s} > 0
              ||| % { sel: sel, min: c.staleMinSeconds },
              'The exporter stopped probing ' + onTarget,
              'The next probe of ' + onTarget + ' is overdue by {{ $value | humanizeDuration }}; its metrics show an old state.'),

        alert('ApistatusConfigReloadFailed', 'warning',
              'apistatus_config_last_reload_successful{%s} == 0' % c.exporterSelector,
              'apistatus-exporter {{ $labels.instance }} failed to reload its config',
              'The last config reload of {{ $labels.instance }} failed; it still runs the previous config, ' +
              'so every target and vendor it probes keeps its old settings. Changes are not applied.'),

        alert('ApistatusExporterAbsent', 'critical',
              'up{%s} == 0 or absent(up{%s})' % [c.exporterSelector, c.exporterSelector],
              'apistatus-exporter {{ with $labels.instance }}{{ . }} {{ end }}has not been scraped for %s'
              % c['for'].ApistatusExporterAbsent,
              ('Prometheus has had no successful scrape of job {{ $labels.job }}{{ with $labels.instance }} ' +
               'at {{ . }}{{ end }} for %s: no target or vendor API is watched through it, and its other ' +
               'alerts cannot fire.') % c['for'].ApistatusExporterAbsent),

        alert('ApistatusExporterOverloaded', 'warning',
              |||
                rate(apistatus_probe_start_lag_seconds_sum{%(sel)s}[%(w)s])
                / rate(apistatus_probe_start_lag_seconds_count{%(sel)s}[%(w)s])
                > %(t)g
              ||| % { sel: c.exporterSelector, w: c.thresholds.startLagWindow, t: c.thresholds.startLagSeconds },
              'apistatus-exporter {{ $labels.instance }} cannot keep its probe schedule',
              ('Probes of {{ $labels.instance }} start {{ $value | humanizeDuration }} late on average over the ' +
               'last %s: it has more targets than it can probe at their intervals (max_concurrency, CPU, slow ' +
               'vendors), so every target is probed less often than configured.') % c.thresholds.startLagWindow),

        // A /probe scrape fails: Prometheus asks for a target the exporter does not know (400), or the
        // scrape times out. The instance of a /probe job is the target name.
        alert('ApistatusProbeScrapeFailed', 'warning',
              'up{%s} == 0' % c.probeSelector,
              '/probe of {{ $labels.instance }} fails for job {{ $labels.job }}',
              ('Prometheus job {{ $labels.job }} has failed to scrape /probe?target={{ $labels.instance }} for ' +
               '%s: the exporter does not know that target (a name missing from its config or removed by a ' +
               'reload), or the probe takes longer than the scrape timeout.') % c['for'].ApistatusProbeScrapeFailed),

        // The scheduler held probes back because their credential's request budget was spent, in
        // every budgetDelayWindow for the `for`: the targets sharing that credential ask for more than
        // their probe_share allows (--check-config warns of it), so they are probed less often than
        // configured. A delay now and then (a login booked beside the probe) does not last.
        alert('ApistatusBudgetDelayingProbes', 'warning',
              'increase(apistatus_budget_delays_total{%s}[%s]) > 0' % [c.exporterSelector, c.thresholds.budgetDelayWindow],
              'apistatus-exporter {{ $labels.instance }} holds back probes of {{ $labels.vendor }} for their request budget',
              ('Probes of {{ $labels.vendor }} targets on {{ $labels.instance }} keep waiting for room in their ' +
               "credential's request budget ({{ $value | humanize }} times in the last %s): " +
               'their intervals ask for more requests than probe_share allows, so they are probed less often ' +
               'than configured.') % c.thresholds.budgetDelayWindow),

        alert('ApistatusCertificateExpiringSoon', 'warning',
              'apistatus_tls_cert_expiry_timestamp_seconds{%s} - time() < %d' % [sel, c.thresholds.certExpirySeconds],
              'The TLS certificate of {{ $labels.vendor }} for {{ $labels.target }} expires soon',
              ('The certificate {{ $labels.vendor }} presents to {{ $labels.target }} expires in ' +
               '{{ $value | humanizeDuration }} (less than %s). When it expires every call fails with a TLS error.')
              % util.duration(c.thresholds.certExpirySeconds)),

        alert('ApistatusErrorBudgetBurnFast', 'critical',
              burnExpr(c.slo.fast),
              onTarget + ' is burning its availability budget fast',
              ('{{ $labels.target }} ({{ $labels.vendor }}) is down often enough to spend its 30-day error budget ' +
               '{{ $value | humanize }} times faster than allowed (burn rate %s; maintenance not counted).')
              % describe(c.slo.fast)),

        alert('ApistatusErrorBudgetBurnSlow', 'warning',
              burnExpr(c.slo.slow),
              onTarget + ' is slowly burning its availability budget',
              ('{{ $labels.target }} ({{ $labels.vendor }}) spends its error budget {{ $value | humanize }} times ' +
               'faster than allowed (burn rate %s): at this pace the objective will be missed.') % describe(c.slo.slow)),
      ],
    }],
  },

  // Inhibit rules for Alertmanager: one notification per incident. `equal` always holds the group
  // labels, so one cluster never mutes another.
  local g = c.groupLabels,
  local rule(sources, targets, equal) = {
    source_matchers: ['alertname=~"%s"' % std.join('|', sources)],
    target_matchers: ['alertname=~"%s"' % std.join('|', targets)],
    equal: g + equal,
  },
  local burns = ['ApistatusErrorBudgetBurnFast', 'ApistatusErrorBudgetBurnSlow'],
  alertmanagerInhibitRules:: [
    // A vendor in maintenance never pages as down, nor on its way back (the alert is held).
    rule(['ApistatusVendorMaintenance'], ['ApistatusTargetDown', 'ApistatusCheckRejected'] + burns, ['target', 'vendor']),
    // A maintenance the vendor declares on its status page mutes the server errors and timeouts of the
    // targets that depend on it (the alert fires only for those classes).
    rule(['ApistatusVendorDeclaredMaintenance'], ['ApistatusTargetDown'] + burns, ['target', 'vendor']),
    // Our egress is down: ApistatusEgressDown pages once; every target unreachable behind it is its
    // symptom, whatever its vendor.
    rule(['ApistatusTargetBehindEgressDown'], ['ApistatusTargetDown'] + burns, ['target', 'vendor']),
    // A cause with a page or ticket of its own: an outage or burn alert of the same target at the
    // same time (another job, a flapping answer) is its symptom. Clock skew and rate limiting are not
    // sources: their conditions can hold while the vendor is really down.
    rule(['ApistatusAuthFailing', 'ApistatusQuotaExceeded', 'ApistatusCheckRejected'],
         ['ApistatusTargetDown'] + burns, ['target', 'vendor']),
    // The target is down: its budget burns because of it.
    rule(['ApistatusTargetDown'], burns, ['target', 'vendor']),
    rule(['ApistatusErrorBudgetBurnFast'], ['ApistatusErrorBudgetBurnSlow'], ['target', 'vendor']),
    // A used-up quota makes the warnings that it is getting low noise.
    rule(['ApistatusQuotaExceeded'], ['ApistatusQuotaLow', 'ApistatusQuotaExhaustionPredicted'], ['target', 'vendor']),
    // An exporter that cannot keep up makes its targets' probes late.
    rule(['ApistatusExporterOverloaded'], ['ApistatusProbesStale'], ['job', 'instance']),
    // An exporter that is down fails the /probe scrapes it serves (their instance is the target).
    rule(['ApistatusExporterAbsent'], ['ApistatusProbeScrapeFailed'], []),
  ],
}
