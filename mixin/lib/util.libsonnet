// Small helpers shared by the alerts, rules and dashboards.
{
  local units = { s: 1, m: 60, h: 3600, d: 86400 },
  // '90s', '5m', '1h', '1d' -> seconds
  seconds(d)::
    local unit = std.substr(d, std.length(d) - 1, 1);
    std.parseInt(std.substr(d, 0, std.length(d) - 1)) * units[unit],
  // seconds -> the largest unit that divides it exactly
  duration(s)::
    if s % 86400 == 0 then '%dd' % (s / 86400)
    else if s % 3600 == 0 then '%dh' % (s / 3600)
    else if s % 60 == 0 then '%dm' % (s / 60)
    else '%ds' % s,
  // an alternation of classes for a regex matcher
  classes(list):: std.join('|', list),
  // the labels of a group as `a, b` (for by/without clauses) and as a list with more labels
  by(labels):: std.join(', ', labels),
}
