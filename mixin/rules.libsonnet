// Recording rules. Names follow level:metric:operations; every target: rule keeps all labels of the
// target (job, instance, target, vendor, the group labels and the target's own labels).
local util = import 'lib/util.libsonnet';

{
  local c = $._config,
  local down = util.classes(c.downClasses),
  local windows = std.set(std.flattenArrays([[w.long, w.short] for w in c.slo.fast + c.slo.slow]), util.seconds),

  prometheusRules+:: {
    groups+: [
      {
        name: 'apistatus.thresholds',
        rules: [
          // kept as series so that dashboards and ad-hoc queries can read them; the alerts use the
          // same values from the mixin's _config
          { record: 'apistatus:slo_objective:ratio', expr: 'vector(%g)' % c.slo.objective },
          // rounded, so that 1 - 0.99 is 0.01 and not 0.010000000000000009
          { record: 'apistatus:slo_error_budget:ratio', expr: 'round(1 - apistatus:slo_objective:ratio, 0.000001)' },
          { record: 'apistatus:quota_low_threshold:ratio', expr: 'vector(%g)' % c.thresholds.quotaLowRatio },
          { record: 'apistatus:clock_skew_threshold:seconds', expr: 'vector(%g)' % c.thresholds.clockSkewSeconds },
          { record: 'apistatus:rate_limited_threshold:ratio', expr: 'vector(%g)' % c.thresholds.rateLimitedRatio },
        ],
      },
      {
        name: 'apistatus.targets',
        rules: [
          // 1 while the last answer's class is an outage class of the vendor
          {
            record: 'target:apistatus_down:bool',
            expr: 'max without (class) (apistatus_outcome{%s,class=~"%s"})' % [c.selector, down],
          },
          // share of each quota still available (only where the vendor states a limit)
          {
            record: 'target:apistatus_quota_remaining:ratio',
            expr: 'apistatus_quota_remaining{%s} / (apistatus_quota_limit{%s} > 0)' % [c.selector, c.selector],
          },
          {
            record: 'target:apistatus_request_duration_seconds:p50_rate5m',
            expr: 'histogram_quantile(0.5, rate(apistatus_request_duration_seconds_bucket{%s}[5m]))' % c.selector,
          },
          {
            record: 'target:apistatus_request_duration_seconds:p95_rate5m',
            expr: 'histogram_quantile(0.95, rate(apistatus_request_duration_seconds_bucket{%s}[5m]))' % c.selector,
          },
          {
            record: 'target_class:apistatus_responses:rate5m',
            expr: 'sum without (code) (rate(apistatus_responses_total{%s}[5m]))' % c.selector,
          },
        ],
      },
      {
        // Time based like blackbox probes (so it also works for /probe jobs): the share of scraped
        // samples in which the vendor was down, among those in which it was not in maintenance. A
        // window spent entirely in maintenance has no ratio.
        name: 'apistatus.slo',
        rules: [
          {
            record: 'target:apistatus_slo_errors:ratio_avg%s' % w,
            expr: |||
              sum without (class) (sum_over_time(apistatus_outcome{%(sel)s,class=~"%(down)s"}[%(w)s]))
              /
              ((count_over_time(apistatus_up{%(sel)s}[%(w)s]) - sum_over_time(apistatus_maintenance{%(sel)s}[%(w)s])) > 0)
            ||| % { sel: c.selector, down: down, w: w },
          }
          for w in windows
        ] + [
          {
            record: 'target:apistatus_slo_burn_rate:avg%s' % w,
            expr: 'target:apistatus_slo_errors:ratio_avg%s / on () group_left () apistatus:slo_error_budget:ratio' % w,
          }
          for w in windows
        ],
      },
    ],
  },
}
