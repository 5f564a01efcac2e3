// Minimal Grafana dashboard builders (schema 39): only what these dashboards use, and only keys of
// Grafana's own dashboard schema (a test decodes them with grafana-foundation-sdk and loses nothing).
{
  ds:: { type: 'prometheus', uid: '${datasource}' },

  target(expr, legend='', instant=false, format='time_series', refId='A'):: {
    datasource: $.ds,
    refId: refId,
    expr: expr,
    legendFormat: legend,
    range: !instant,
    instant: instant,
    format: format,
    editorMode: 'code',
  },

  link(title, url, blank=true):: {
    title: title,
    type: 'link',
    url: url,
    icon: 'doc',
    tooltip: '',
    tags: [],
    asDropdown: false,
    targetBlank: blank,
    includeVars: false,
    keepTime: false,
  },

  panel(type, title, description, targets, w=12, h=8):: {
    type: type,
    title: title,
    description: description,
    datasource: $.ds,
    targets: [t { refId: std.char(65 + i) } for i in std.range(0, std.length(targets) - 1) for t in [targets[i]]],
    fieldConfig: { defaults: {}, overrides: [] },
    options: {},
    links: [],
    gridPos: { w: w, h: h },
  },

  timeseries(title, description, targets, unit='short', w=12, h=8):: $.panel('timeseries', title, description, targets, w, h) {
    fieldConfig+: { defaults+: { unit: unit, custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never', spanNulls: false } } },
    options: { legend: { showLegend: true, displayMode: 'list', placement: 'bottom', calcs: [] }, tooltip: { mode: 'multi', sort: 'desc' } },
  },

  stat(title, description, targets, mappings=[], steps=[{ color: 'green', value: null }], unit='short', w=12, h=5):: $.panel('stat', title, description, targets, w, h) {
    fieldConfig+: { defaults+: { unit: unit, mappings: mappings, thresholds: { mode: 'absolute', steps: steps } } },
    options: {
      colorMode: 'background',
      graphMode: 'none',
      textMode: 'value_and_name',
      justifyMode: 'auto',
      orientation: 'auto',
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
    },
  },

  valueMap(map):: [{ type: 'value', options: { [k]: map[k] { index: std.parseInt(k) } for k in std.objectFields(map) } }],

  row(title):: { type: 'row', title: title, collapsed: false, panels: [], gridPos: { w: 24, h: 1 } },

  // Places the panels left to right, top to bottom, and numbers them.
  layout(panels)::
    local step(acc, p) =
      local w = p.gridPos.w;
      local h = p.gridPos.h;
      local newLine = acc.x + w > 24 || p.type == 'row';
      local x = if newLine then 0 else acc.x;
      local y = if newLine then acc.y + acc.rowH else acc.y;
      {
        x: x + w,
        y: y,
        rowH: if newLine then h else std.max(acc.rowH, h),
        out: acc.out + [p { id: std.length(acc.out) + 1, gridPos: { x: x, y: y, w: w, h: h } }],
      };
    std.foldl(step, panels, { x: 0, y: 0, rowH: 0, out: [] }).out,

  variable(name, label, query, multi=true, hide=0):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.ds,
    query: { query: query, refId: name + '-var' },
    refresh: 2,
    sort: 1,
    hide: hide,
    regex: '',
    multi: multi,
    includeAll: multi,
    current: {},
    options: [],
  } + (if multi then { allValue: '.*' } else {}),

  dashboard(uid, title, description, c, variables, panels, links=[]):: {
    uid: uid,
    title: c.prefix + title,
    description: description,
    tags: c.tags,
    timezone: c.timezone,
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    refresh: c.refresh,
    time: { from: c.time, to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    weekStart: '',
    annotations: { list: [{
      datasource: { type: 'grafana', uid: '-- Grafana --' },
      enable: true,
      hide: true,
      iconColor: 'rgba(0, 211, 255, 1)',
      name: 'Annotations & Alerts',
      type: 'dashboard',
    }] },
    links: links,
    templating: { list: [{
      name: 'datasource',
      label: 'Data source',
      type: 'datasource',
      query: 'prometheus',
      current: {},
      hide: 0,
      refresh: 1,
      regex: '',
      options: [],
    }] + variables },
    panels: $.layout(panels),
  },
}
