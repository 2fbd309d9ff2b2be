#!/usr/bin/env python3
"""Checks deploy/grafana/holdfast.json against a real node's /metrics.

  check_grafana.py --self-test
  check_grafana.py DASHBOARD SCRAPE RULES_OUT

The dashboard must be well formed (uid, title, schemaVersion, the
datasource, cluster, tier and pod variables, panels with a datasource and
targets, gridPos inside 24 columns, unique ids), every selector of a
holdfast metric must filter on $cluster, $tier and $pod, and every metric
name in every expression (panels and variables) must be a sample name in
SCRAPE: counters are queried as NAME_total, histograms as NAME_bucket,
NAME_sum and NAME_count, as Prometheus stores them. RULES_OUT receives the
expressions as recording rules (Grafana's variables replaced) for
`promtool check rules`, which parses them with Prometheus' own parser.
Exits non-zero with every failure listed."""
import json
import re
import sys

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Keywords after which a parenthesised list holds label names, not series.
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = GROUPING | {"offset", "bool", "and", "or", "unless", "atan2", "inf", "nan"}
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "summary": ["", "_sum", "_count"],
            "gaugehistogram": ["_bucket", "_gsum", "_gcount"], "info": ["_info"]}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def skip_string(text, i):
    """Index after the string literal starting at text[i]."""
    quote = text[i]
    i += 1
    while i < len(text):
        if text[i] == "\\" and quote != "`":
            i += 2
            continue
        if text[i] == quote:
            return i + 1
        i += 1
    raise ValueError(f"unterminated string in {text!r}")


def skip_until(text, i, close):
    """Index after the `close` that ends the bracket at text[i], skipping strings."""
    i += 1
    while i < len(text):
        if text[i] in "\"'`":
            i = skip_string(text, i)
            continue
        if text[i] == close:
            return i + 1
        i += 1
    raise ValueError(f"unclosed {close!r} in {text!r}")


def skip_space(text, i):
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def selectors(expr):
    """(metric name, label matchers or '') for every series selector in a PromQL expression."""
    found = []
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = skip_string(expr, i)
        elif c == "#":
            end = expr.find("\n", i)
            i = len(expr) if end < 0 else end
        elif c == "{":
            i = skip_until(expr, i, "}")
        elif c == "[":
            i = skip_until(expr, i, "]")
        elif c == "$":
            match = re.compile(r"\$(\{[^}]*\}|\w+)").match(expr, i)
            i = match.end() if match else i + 1
        elif c.isdigit() or c == ".":
            match = re.compile(r"[0-9A-Za-z.]+").match(expr, i)
            i = match.end()
        elif IDENT.match(c):
            name = IDENT.match(expr, i).group(0)
            i += len(name)
            j = skip_space(expr, i)
            following = IDENT.match(expr, j)
            if name.lower() in GROUPING:
                if j < len(expr) and expr[j] == "(":
                    i = skip_until(expr, j, ")")
                continue
            if j < len(expr) and expr[j] == "(":
                continue  # a function or an aggregation
            if following and following.group(0).lower() in ("by", "without"):
                continue  # an aggregation with its grouping first: sum by (x) (...)
            if name.lower() in KEYWORDS:
                continue
            matchers = ""
            if j < len(expr) and expr[j] == "{":
                end = skip_until(expr, j, "}")
                matchers = expr[j + 1:end - 1]
                i = end
            found.append((name, matchers))
        else:
            i += 1
    return found


def metric_names(expr):
    return {name for name, _ in selectors(expr)}


def exported(scrape):
    """Sample names in a Prometheus/OpenMetrics text, and each family's type."""
    samples = set()
    types = {}
    for line in scrape.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            match = IDENT.match(line)
            if match:
                samples.add(match.group(0))
    return samples, types


def why_missing(name, samples, types):
    """Why `name` is not a sample name: a family queried without its suffix, or unknown."""
    if name in types:
        kind = types[name]
        wanted = [name + s for s in SUFFIXES.get(kind, [""]) if name + s in samples]
        return f"{name} is a {kind} family: query {' or '.join(wanted) or 'its samples'}"
    for family, kind in types.items():
        if name.startswith(family + "_"):
            return f"{name}: {family} is a {kind}, whose samples are " + ", ".join(
                family + s for s in SUFFIXES.get(kind, [""]))
    return f"{name} is not exported"


def expressions(dashboard):
    """(where, PromQL) for every panel target and every query variable's selector."""
    out = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            out.append((f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
        out.append((f"variable {var.get('name')}", match.group(1) if match else query))
    return out


def check_structure(d, failures):
    def need(condition, message):
        if not condition:
            failures.append(message)

    need(isinstance(d.get("uid"), str) and 0 < len(d["uid"]) <= 40, "uid: a string of 1 to 40 characters")
    need(isinstance(d.get("title"), str) and d["title"], "title missing")
    need(isinstance(d.get("schemaVersion"), int) and d["schemaVersion"] >= 30, "schemaVersion: an integer >= 30")
    need(isinstance(d.get("time"), dict) and {"from", "to"} <= d["time"].keys(), "time: from and to")
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    need(variables.get("datasource", {}).get("type") == "datasource"
         and variables["datasource"].get("query") == "prometheus", "variable datasource (prometheus) missing")
    for name in ("cluster", "tier", "pod"):
        var = variables.get(name, {})
        need(var.get("type") == "query", f"variable {name} (a query) missing")
        need(var.get("datasource", {}).get("uid") == "${datasource}", f"variable {name}: datasource ${{datasource}}")
        need(var.get("includeAll") and var.get("allValue") == ".*",
             f"variable {name}: includeAll with allValue .* (series without the label still match)")
    panels = d.get("panels")
    need(isinstance(panels, list) and panels, "panels missing")
    ids = [p.get("id") for p in panels or []]
    need(len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), f"panel ids not unique integers: {ids}")
    cells = set()
    for p in panels or []:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        need(isinstance(p.get("title"), str) and p["title"], f"{where}: no title")
        g = p.get("gridPos", {})
        ok = all(isinstance(g.get(k), int) for k in "xywh") and g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24
        need(ok, f"{where}: gridPos {g} outside 24 columns")
        if ok:
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            need(not (mine & cells), f"{where}: overlaps another panel")
            cells |= mine
        if p.get("type") == "row":
            need(not p.get("targets"), f"{where}: a row has no targets")
            continue
        need(p.get("datasource", {}).get("uid") == "${datasource}", f"{where}: datasource is not ${{datasource}}")
        targets = p.get("targets") or []
        need(targets, f"{where}: no targets")
        refs = [t.get("refId") for t in targets]
        need(len(refs) == len(set(refs)) and all(refs), f"{where}: refIds {refs}")
        for t in targets:
            need(t.get("datasource", {}).get("uid") == "${datasource}", f"{where} {t.get('refId')}: datasource")
            need(isinstance(t.get("expr"), str) and t["expr"].strip(), f"{where} {t.get('refId')}: empty expr")


def check(dashboard, scrape):
    """Every failure, and the metric names the dashboard uses."""
    failures = []
    check_structure(dashboard, failures)
    samples, types = exported(scrape)
    used = set()
    for where, expr in expressions(dashboard):
        try:
            found = selectors(expr)
        except ValueError as error:
            failures.append(f"{where}: {error}")
            continue
        if not found:
            failures.append(f"{where}: no metric in {expr!r}")
        for name, matchers in found:
            used.add(name)
            if name not in samples:
                failures.append(f"{where}: {why_missing(name, samples, types)}")
            if where.startswith("panel"):
                for label in ("cluster", "tier", "pod"):
                    if f'{label}=~"${label}"' not in matchers:
                        failures.append(f'{where}: {name} does not filter on {label}=~"${label}"')
    return failures, used


def rules(dashboard):
    """The panel expressions as one group of recording rules, YAML (JSON is YAML)."""
    out = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr", "")
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append({"record": f"grafana:panel_{panel.get('id')}_{target.get('refId')}", "expr": expr})
    return json.dumps({"groups": [{"name": "grafana-dashboard", "rules": out}]}, indent=1)


def self_test():
    cases = {
        'histogram_quantile(0.99, sum by (le, site) (rate(a_bucket{pod=~"$pod"}[$__rate_interval])))': {"a_bucket"},
        'sum without (protocol) (rate(a_total{x="rate(b) {c}"}[5m])) / on(pod) group_left(origin) c offset 5m':
            {"a_total", "c"},
        "time() - max by (pod) (start_seconds)": {"start_seconds"},
        "count(up == 0) or vector(0)": {"up"},
        'label_replace(up, "dst", "$1", "src", "(.*)")': {"up"},
        "sum(rate(a_total[1m])) by (pod) > bool 0": {"a_total"},
        "changes(s{a='1'}[1h]) # a comment naming fake_metric": {"s"},
        "x unless on (pod) y and ignoring (le) z": {"x", "y", "z"},
        "1e3 * inf - nan": set(),
    }
    failures = []
    for expr, want in cases.items():
        got = metric_names(expr)
        if got != want:
            failures.append(f"metric_names({expr!r}) = {got}, want {want}")
    scrape = ("# TYPE foo counter\nfoo_total 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"
              "# TYPE g gauge\ng{tier=\"memory\"} 2\n# EOF\n")
    samples, types = exported(scrape)
    for name, ok in [("foo_total", True), ("foo", False), ("h_sum", True), ("h_total", False), ("g", True),
                     ("g_total", False), ("nope", False)]:
        if (name in samples) != ok:
            failures.append(f"{name}: exported is {name in samples}, want {ok}")
    if "query foo_total" not in why_missing("foo", samples, types):
        failures.append(f"why_missing(foo) = {why_missing('foo', samples, types)}")
    sel = 'cluster=~"$cluster", tier=~"$tier", pod=~"$pod"'
    base = {"uid": "x", "title": "x", "schemaVersion": 39, "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}] + [
                {"name": n, "type": "query", "datasource": {"uid": "${datasource}"}, "includeAll": True,
                 "allValue": ".*", "query": {"query": f"label_values(g, {n})"}} for n in ("cluster", "tier", "pod")]}}
    ds = {"uid": "${datasource}"}

    def dash(expr):
        return dict(base, panels=[{"id": 1, "title": "t", "type": "timeseries", "datasource": ds,
                                   "gridPos": {"x": 0, "y": 0, "w": 12, "h": 8},
                                   "targets": [{"refId": "A", "datasource": ds, "expr": expr}]}])

    good, _ = check(dash(f"sum(rate(foo_total{{{sel}}}[5m]))"), scrape)
    if good:
        failures.append(f"a good dashboard failed: {good}")
    for expr, word in [(f"rate(foo{{{sel}}}[5m])", "query foo_total"), (f"nope{{{sel}}}", "not exported"),
                       ('rate(foo_total{pod=~"$pod"}[5m])', "does not filter on cluster")]:
        bad, _ = check(dash(expr), scrape)
        if not any(word in b for b in bad):
            failures.append(f"{expr!r} should fail with {word!r}, got {bad}")
    broken = dash(f"foo_total{{{sel}}}")
    del broken["uid"]
    broken["panels"][0]["gridPos"]["w"] = 30
    bad, _ = check(broken, scrape)
    if not any("uid" in b for b in bad) or not any("24 columns" in b for b in bad):
        failures.append(f"structure errors not found: {bad}")
    return failures


def main(argv):
    if argv[1:] == ["--self-test"]:
        failures = self_test()
        print("\n".join(failures) or "check_grafana self-test ok")
        return 1 if failures else 0
    if len(argv) != 4:
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        dashboard = json.load(f)
    with open(argv[2]) as f:
        scrape = f.read()
    failures, used = check(dashboard, scrape)
    with open(argv[3], "w") as f:
        f.write(rules(dashboard))
    samples, _ = exported(scrape)
    unused = sorted(n for n in samples if n.startswith("holdfast_") and n not in used)
    panels = sum(1 for p in dashboard.get("panels", []) if p.get("type") != "row")
    print(f"{panels} panels, {len(used)} metric names, all exported" if not failures else "\n".join(failures))
    if unused:
        print("exported but on no panel: " + ", ".join(unused))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
