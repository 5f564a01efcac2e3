// apistatus-exporter monitoring mixin: prometheusAlerts, prometheusRules, grafanaDashboards.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
(import 'rules.libsonnet') +
(import 'dashboards/dashboards.libsonnet') +
(import 'examples.libsonnet')
