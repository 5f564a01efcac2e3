// Small helpers shared by the alerts, rules and dashboards.
{
  local units = { s: 1, m: 60, h: 3600, d: 86400 },
  // a Prometheus duration ('90s', '5m', '1h30m', '1d') -> seconds
  seconds(d)::
    local step(acc, ch) =
      if std.member('0123456789', ch) then acc { digits+: ch }
      else if std.objectHas(units, ch) && acc.digits != '' then { total: acc.total + std.parseInt(acc.digits) * units[ch], digits: '' }
      else error 'not a duration of s, m, h, d: ' + d;
    local r = std.foldl(step, std.stringChars(d), { total: 0, digits: '' });
    if r.digits != '' || d == '' then error 'not a duration of s, m, h, d: ' + d else r.total,
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
