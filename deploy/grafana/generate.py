#!/usr/bin/env python3
"""Writes deploy/grafana/holdfast.json, the Grafana dashboard for the metrics
a node exports (crates/node/src/metrics.rs). Edit the panels here and run it;
CI (.ci/grafana) fails if the JSON differs from what this writes, or if a
panel queries a metric the node does not export.

Every query filters on the `cluster`, `tier` and `pod` labels that
Prometheus adds to the targets (deploy/kubernetes/base/monitoring.yaml sets
`tier` from the pod's component label; `cluster` comes from the Prometheus
that scrapes, as an external label or a relabelling). The node's own `tier`
label (memory or disk, on holdfast_cache_*) is then stored as
`exported_tier`, which is what the per-tier panels group by."""
import json
import pathlib

SEL = 'cluster=~"$cluster", tier=~"$tier", pod=~"$pod"'
RI = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}
HITS = 'cache=~"HIT|STALE|REVALIDATED"'
LOOKUPS = 'cache=~"HIT|STALE|REVALIDATED|MISS"'
RESULT_COLORS = {"HIT": "green", "MISS": "blue", "STALE": "orange", "REVALIDATED": "purple", "PASS": "super-light-blue",
                 "ERROR": "red"}


def sel(extra=""):
    return "{" + SEL + (", " + extra if extra else "") + "}"


def rate(metric, extra="", fn="rate", window=RI):
    return f"{fn}({metric}{sel(extra)}[{window}])"


class Layout:
    """Places panels left to right in rows of 24 columns."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_height
            self.row_height = 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(panel)

    def row(self, title):
        if self.x:
            self.y += self.row_height
        self.x = 0
        self.row_height = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x = 0
        self.y += 1
        self.row_height = 0


def targets(queries):
    out = []
    for i, (expr, legend) in enumerate(queries):
        out.append({"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                    "range": True})
    return out


def panel(kind, title, description, queries, unit="short", **extra):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets(queries),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    for key, value in extra.items():
        if key == "defaults":
            p["fieldConfig"]["defaults"].update(value)
        elif key == "overrides":
            p["fieldConfig"]["overrides"] = value
        else:
            p[key] = value
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "table":
        for target in p["targets"]:
            target.update({"instant": True, "range": False, "format": "table"})
        p["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True},
                                                                 "renameByName": {"Value": "uptime"}}}]
    if kind in ("stat", "bargauge", "gauge"):
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
        if kind == "bargauge":
            p["options"].update({"displayMode": "gradient", "orientation": "horizontal"})
    return p


def thresholds(*steps):
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def stacked():
    return {"custom": {"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 30, "lineWidth": 1}}


def result_colors():
    return [{"matcher": {"id": "byName", "options": name},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}]}
            for name, color in RESULT_COLORS.items()]


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
        "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


def dashboard():
    lay = Layout()
    hit_ratio = (f"sum(rate(holdfast_responses_total{sel(HITS)}[{RI}])) / "
                 f"sum(rate(holdfast_responses_total{sel(LOOKUPS)}[{RI}]))")
    five_xx = rate("holdfast_responses_total", 'status=~"5.."')

    lay.row("Traffic")
    lay.add(panel("stat", "Hit ratio", "HIT, STALE and REVALIDATED over those and MISS. Above 0.9 is normal "
                  "for hashed assets; a drop means purges, a deploy of new files, or evictions.",
                  [(hit_ratio, "")], "percentunit",
                  defaults={"thresholds": thresholds((None, "red"), (0.8, "orange"), (0.9, "green"))}), 4, 4)
    lay.add(panel("stat", "Requests/s", "All responses, every protocol.",
                  [(f"sum({rate('holdfast_responses_total')})", "")], "reqps"), 4, 4)
    lay.add(panel("stat", "5xx ratio", "Responses with a 5xx status over all responses (origin down and "
                  "nothing stored, sheds).",
                  [(f"sum({five_xx}) / sum({rate('holdfast_responses_total')})", "")], "percentunit",
                  defaults={"thresholds": thresholds((None, "green"), (0.001, "orange"), (0.01, "red"))}), 4, 4)
    lay.add(panel("stat", "Served stale/s", "Responses served stale: the origin fails, or "
                  "stale-while-revalidate. Sustained stale serving means an origin problem clients do not see.",
                  [(f"sum({rate('holdfast_stale_responses_total')})", "")], "reqps",
                  defaults={"thresholds": thresholds((None, "green"), (0.01, "orange"))}), 4, 4)
    lay.add(panel("stat", "Origins down", "Origin members whose circuit breaker is not closed, over all pods.",
                  [(f"count(holdfast_origin_up{sel()} == 0) or vector(0)", "")], "short",
                  defaults={"thresholds": thresholds((None, "green"), (1, "red"))}), 4, 4)
    lay.add(panel("stat", "Restarts (1h)", "Process starts in the last hour, over all pods "
                  "(changes of holdfast_start_time_seconds).",
                  [(f"sum(changes(holdfast_start_time_seconds{sel()}[1h]))", "")], "short",
                  defaults={"thresholds": thresholds((None, "green"), (1, "orange"), (3, "red"))}), 4, 4)
    lay.add(panel("timeseries", "Requests/s by cache result", "x-cache of every response, stacked.",
                  [(f"sum by (cache) ({rate('holdfast_responses_total')})", "{{cache}}")], "reqps",
                  defaults=stacked(), overrides=result_colors()), 12, 8)
    lay.add(panel("timeseries", "Hit ratio by pod", "As the stat above, per pod: one pod low while the "
                  "others are high is a cold (new or restarted) pod.",
                  [(f"sum by (pod) (rate(holdfast_responses_total{sel(HITS)}[{RI}])) / "
                    f"sum by (pod) (rate(holdfast_responses_total{sel(LOOKUPS)}[{RI}]))", "{{pod}}")],
                  "percentunit", defaults={"min": 0, "max": 1}), 12, 8)
    lay.add(panel("timeseries", "Responses/s by status", "Status codes; 421 is a Host no site claims, 503 "
                  "with x-cache ERROR an origin down with nothing stored, or a shed.",
                  [(f"sum by (status) ({rate('holdfast_responses_total')})", "{{status}}")], "reqps"), 12, 8)
    lay.add(panel("timeseries", "Bytes served/s by pod", "Response body bytes (by Content-Length).",
                  [(f"sum by (pod) ({rate('holdfast_response_body_bytes_total')})", "{{pod}}")], "Bps"), 12, 8)

    lay.row("Origin health")
    lay.add(panel("state-timeline", "Origin breakers", "1 (closed) while an origin takes traffic; 0 while it "
                  "is ejected (open) or on trial (half-open). Flapping between the two is an origin restarting "
                  "or overloaded.",
                  [(f"min by (pod, site, origin) (holdfast_origin_up{sel()})", "{{pod}} {{origin}}")], "short",
                  defaults={"mappings": [{"type": "value", "options": {
                      "0": {"text": "open", "color": "red", "index": 0},
                      "1": {"text": "closed", "color": "green", "index": 1}}}],
                      "thresholds": thresholds((None, "red"), (1, "green"))}), 12, 8)
    lay.add(panel("timeseries", "Origin ejections", "Origins ejected by passive health (consecutive "
                  "failures), per site.",
                  [(f"sum by (site) ({rate('holdfast_origin_ejections_total', fn='increase')})", "{{site}}")],
                  "short"), 12, 8)
    lay.add(panel("timeseries", "Origin retries, failures and refusals/s", "retries: attempts after the "
                  "first; failures: requests no origin answered within the hold budget; budget refusals: "
                  "retries the node-wide retry budget refused; busy: every connection to an origin in use; relayed "
                  "5xx: retries ended on the origin's own 502/503/504, relayed; panic-routed: attempts sent to an "
                  "ejected origin because every origin was ejected; connections opened: new origin "
                  "connections (the other requests reused pooled ones).",
                  [(f"sum by (site) ({rate('holdfast_origin_retries_total')})", "retries {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_failures_total')})", "failures {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_retry_budget_exhausted_total')})",
                    "budget refusals {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_busy_total')})", "busy {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_relayed_errors_total')})", "relayed 5xx {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_panic_routed_total')})", "panic-routed {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_connections_opened_total')})",
                    "connections opened {{site}}")],
                  "reqps"), 12, 8)
    lay.add(panel("timeseries", "Origin latency", "Time from origin request to response head, successful "
                  "attempts.",
                  [(f"histogram_quantile(0.5, sum by (le, site) "
                    f"({rate('holdfast_origin_latency_seconds_bucket')}))", "p50 {{site}}"),
                   (f"histogram_quantile(0.99, sum by (le, site) "
                    f"({rate('holdfast_origin_latency_seconds_bucket')}))", "p99 {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_latency_seconds_sum')}) / "
                    f"sum by (site) ({rate('holdfast_origin_latency_seconds_count')})", "mean {{site}}")],
                  "s"), 12, 8)
    lay.add(panel("timeseries", "Origin requests/s and time held", "requests handed to each site's origin "
                  "group; held: seconds per second requests spent waiting on origins (retries, ejected "
                  "origins), about the number of requests waiting at once.",
                  [(f"sum by (site) ({rate('holdfast_origin_requests_total')})", "requests {{site}}"),
                   (f"sum by (site) ({rate('holdfast_origin_hold_seconds_total')})", "held {{site}}")],
                  "short"), 12, 8)
    lay.add(panel("timeseries", "Origin connections in use", "Requests in progress per origin, against "
                  "origin.max_connections (256 by default).",
                  [(f"sum by (site, origin) (holdfast_origin_connections_in_use{sel()})", "{{origin}}")],
                  "short"), 12, 8)

    lay.row("Stale serving")
    lay.add(panel("timeseries", "Served stale/s by pod", "Non-zero for minutes: the origin is failing and "
                  "clients are kept whole by stored copies (the alert HoldfastServingStale fires).",
                  [(f"sum by (pod) ({rate('holdfast_stale_responses_total')})", "{{pod}}")], "reqps"), 12, 8)
    lay.add(panel("timeseries", "Share of responses served stale", "Stale responses over all responses.",
                  [(f"sum({rate('holdfast_stale_responses_total')}) / sum({rate('holdfast_responses_total')})",
                    "stale")], "percentunit"), 12, 8)

    lay.row("Tiers and budgets")
    pct = {"min": 0, "max": 1, "thresholds": thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))}
    lay.add(panel("bargauge", "Memory tier use vs budget", "What the memory tier's entries cost over "
                  "cache.memory_size. Near 1 is normal (it evicts); evictions show what it costs.",
                  [(f"max by (pod) (holdfast_memory_tier_bytes{sel()} / holdfast_memory_tier_limit_bytes{sel()})",
                    "{{pod}}")], "percentunit", defaults=pct), 8, 7)
    lay.add(panel("bargauge", "Disk tier bytes vs budget", "Bytes the disk tier's files take over "
                  "cache.disk_size. It evicts down to 90% on its own; stuck at 1 with disk full set means the "
                  "volume is smaller than disk_size.",
                  [(f"max by (pod) (holdfast_disk_tier_bytes{sel()} / holdfast_disk_tier_limit_bytes{sel()})",
                    "{{pod}}")], "percentunit", defaults=pct), 8, 7)
    lay.add(panel("bargauge", "Disk tier files vs budget", "Files over cache.disk_max_files (inodes).",
                  [(f"max by (pod) (holdfast_disk_tier_files{sel()} / holdfast_disk_tier_limit_files{sel()})",
                    "{{pod}}")], "percentunit", defaults=pct), 8, 7)
    lay.add(panel("timeseries", "Tier bytes and budgets", "Memory and disk use with their limits, per pod.",
                  [(f"sum by (pod) (holdfast_memory_tier_bytes{sel()})", "memory {{pod}}"),
                   (f"sum by (pod) (holdfast_memory_tier_limit_bytes{sel()})", "memory limit {{pod}}"),
                   (f"sum by (pod) (holdfast_disk_tier_bytes{sel()})", "disk {{pod}}"),
                   (f"sum by (pod) (holdfast_disk_tier_limit_bytes{sel()})", "disk limit {{pod}}")],
                  "bytes"), 12, 8)
    lay.add(panel("timeseries", "Objects and evictions/s by cache tier", "Objects stored (disk: bodies) and "
                  "evictions to stay within budgets. exported_tier is the node's own tier label (memory, disk).",
                  [(f"sum by (exported_tier) (holdfast_cache_objects{sel()})", "objects {{exported_tier}}"),
                   (f"sum by (exported_tier) ({rate('holdfast_cache_evictions_total')})",
                    "evictions/s {{exported_tier}}")], "short"), 12, 8)
    lay.add(panel("timeseries", "Disk full, errors and skipped writes", "disk full is 1 while the tier "
                  "refuses new objects; corrupt files are quarantined and refetched; skipped writes mean the "
                  "disk cannot keep up with the write queue.",
                  [(f"max by (pod) (holdfast_disk_full{sel()})", "full {{pod}}"),
                   (f"sum by (kind) ({rate('holdfast_disk_errors_total', fn='increase')})", "errors {{kind}}"),
                   (f"sum by (pod) ({rate('holdfast_disk_writes_skipped_total', fn='increase')})",
                    "skipped writes {{pod}}")], "short"), 12, 8)
    lay.add(panel("timeseries", "Client TCP connections vs limit", "Open client connections over "
                  "server.max_connections.",
                  [(f"max by (pod) (holdfast_tcp_connections{sel()} / holdfast_tcp_connections_limit{sel()})",
                    "{{pod}}")], "percentunit", defaults={"min": 0, "max": 1}), 12, 8)

    lay.row("Purges, restarts, fills and sheds")
    lay.add(panel("timeseries", "Purges by kind", "Purges received (url, prefix, tag, all). A purge "
                  "of all, or a tag on every asset, explains a hit-ratio drop after it.",
                  [(f"sum by (kind) ({rate('holdfast_purges_total', fn='increase')})", "{{kind}}")], "short",
                  defaults={"custom": {"drawStyle": "bars", "fillOpacity": 60}}), 8, 8)
    lay.add(panel("table", "Uptime by pod", "Seconds since each pod's process started.",
                  [(f"time() - max by (pod) (holdfast_start_time_seconds{sel()})", "{{pod}}")], "s",
                  options={"showHeader": True}), 8, 8)
    lay.add(panel("timeseries", "Restarts by pod", "Process starts in the last hour.",
                  [(f"sum by (pod) (changes(holdfast_start_time_seconds{sel()}[1h]))", "{{pod}}")], "short"),
            8, 8)
    lay.add(panel("timeseries", "Fills in flight and waiters", "Origin fills in progress (against "
                  "cache.max_concurrent_fills), and client requests reading them (coalesced misses).",
                  [(f"sum by (pod) (holdfast_fills_in_flight{sel()})", "fills {{pod}}"),
                   (f"sum by (pod) (holdfast_coalesced_waiters{sel()})", "waiters {{pod}}")], "short"), 8, 8)
    lay.add(panel("timeseries", "Fill buffer use vs budget", "Body bytes held by fills over "
                  "cache.fill_buffer_size.",
                  [(f"max by (pod) (holdfast_fill_buffer_bytes{sel()} / holdfast_fill_buffer_limit_bytes{sel()})",
                    "{{pod}}")], "percentunit", defaults={"min": 0, "max": 1}), 8, 8)
    lay.add(panel("timeseries", "Sheds/s by reason", "Work refused to stay within budgets: fills cut or "
                  "refused, client connections closed, access records dropped. Any sustained value is a "
                  "budget too small for the load, or an attack.",
                  [(f"sum by (reason) ({rate('holdfast_fills_shed_total')})", "fills {{reason}}"),
                   (f"sum by (reason) ({rate('holdfast_tcp_connections_shed_total')})", "tcp {{reason}}"),
                   (f"sum({rate('holdfast_access_log_dropped_total')})", "access log dropped")], "short"), 8, 8)

    return {
        "uid": "holdfast",
        "title": "holdfast",
        "description": "holdfast CDN nodes: traffic by cache result, origin health, stale serving, tiers "
                       "against budgets, purges, restarts, fills and sheds. Generated by "
                       "deploy/grafana/generate.py.",
        "tags": ["holdfast", "cdn"],
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "regex": ""},
            variable("cluster", "Cluster", "label_values(holdfast_start_time_seconds, cluster)"),
            variable("tier", "Tier", 'label_values(holdfast_start_time_seconds{cluster=~"$cluster"}, tier)'),
            variable("pod", "Pod",
                     'label_values(holdfast_start_time_seconds{cluster=~"$cluster", tier=~"$tier"}, pod)'),
        ]},
        "panels": lay.panels,
    }


if __name__ == "__main__":
    out = pathlib.Path(__file__).resolve().parent / "holdfast.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {out}")
