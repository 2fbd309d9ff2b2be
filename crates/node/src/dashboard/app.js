// holdfast admin dashboard. Polls /stats once a second with the admin token
// (kept in sessionStorage, sent as a bearer token, never in a URL), turns
// successive counter reads into rates, and draws them as inline SVG. No
// dependencies and no network beyond this listener.
"use strict";

const RESULTS = ["HIT", "MISS", "STALE", "REVALIDATED", "PASS", "ERROR"];
const COLORS = {
  HIT: "#2e7d32", MISS: "#1565c0", STALE: "#ef6c00",
  REVALIDATED: "#6a1b9a", PASS: "#00838f", ERROR: "#c62828",
};
const HITS = ["HIT", "STALE", "REVALIDATED"];
const POLL_MS = 1000;
const WINDOW_MS = 5 * 60 * 1000;
const RATIO_WINDOW_MS = 60 * 1000;
// Rates and the hit-ratio line are taken over this much time.
const RATE_MS = 10 * 1000;
const TOKEN_KEY = "holdfast-admin-token";
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  timer: null,
  // The reads of the last WINDOW_MS: time (performance.now()) and counters.
  reads: [],
  // One sample per read: time, then rate per result, hits and lookups over RATE_MS.
  samples: [],
  // Per origin: the last latency counters and the last mean between two reads.
  latency: new Map(),
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  return node;
}

// ---- formatting

function formatInt(n) {
  return Math.round(n).toLocaleString("en-US");
}

function formatRate(n) {
  if (n >= 100) return formatInt(n);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return (unit === 0 ? String(value) : value.toFixed(value >= 100 ? 0 : 1)) + " " + units[unit];
}

function formatDuration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  if (d > 0) return d + " d " + h + " h";
  if (h > 0) return h + " h " + m + " min";
  if (m > 0) return m + " min " + s + " s";
  return s + " s";
}

function formatPercent(ratio) {
  return ratio === null || Number.isNaN(ratio) ? "–" : (ratio * 100).toFixed(1) + " %";
}

function formatMs(ms) {
  return (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2)) + " ms";
}

// ---- login and polling

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

function showLogin(message) {
  clearTimeout(state.timer);
  state.timer = null;
  $("dash").hidden = true;
  $("node").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setStatus("", false);
  $("token").focus();
}

function showDashboard() {
  $("login").hidden = true;
  $("dash").hidden = false;
  $("node").hidden = false;
  $("logout").hidden = false;
}

function resetHistory() {
  state.reads = [];
  state.samples = [];
  state.latency.clear();
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, POLL_MS);
}

async function fetchStats(token) {
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), 5000);
  try {
    return await fetch("/stats", {
      headers: { Authorization: "Bearer " + token, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: abort.signal,
    });
  } finally {
    clearTimeout(timeout);
  }
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin("");
    return;
  }
  let stats;
  try {
    const response = await fetchStats(token);
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      resetHistory();
      showLogin("The node refused this token.");
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    stats = await response.json();
  } catch (error) {
    setStatus("node unreachable (" + error.message + "), retrying", true);
    schedule();
    return;
  }
  // A sign-out while the request was out wins.
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  showDashboard();
  render(stats, performance.now());
  setStatus("live · " + new Date().toLocaleTimeString(), false);
  schedule();
}

// ---- rendering

function render(stats, now) {
  renderNode(stats);
  const sample = takeSample(stats, now);
  renderTraffic(stats, sample, now);
  renderTiers(stats);
  renderOrigins(stats);
  renderPurges(stats);
}

function renderNode(stats) {
  $("node-version").textContent = stats.version || "unknown";
  $("node-config").textContent = stats.config_path || "none (flags only)";
  $("node-uptime").textContent = formatDuration(stats.uptime_s);
  const ready = $("node-ready");
  ready.textContent = stats.ready ? "ready" : "draining";
  ready.className = "badge " + (stats.ready ? "ready" : "draining");
}

/// Rates over the last RATE_MS (polls land unevenly against bursty
/// traffic, so read-to-read rates would jump between 0 and twice the truth);
/// history restarts when counters went back (the node restarted behind the
/// same address).
function takeSample(stats, now) {
  const counts = {};
  for (const r of RESULTS) counts[r] = Number(stats.responses[r] || 0);
  const previous = state.reads[state.reads.length - 1];
  if (previous && RESULTS.some((r) => counts[r] < previous.counts[r])) resetHistory();
  state.reads.push({ t: now, counts });
  while (state.reads.length > 0 && state.reads[0].t < now - WINDOW_MS) state.reads.shift();
  const base = readSince(now - RATE_MS);
  if (!base) return null;
  const seconds = (now - base.t) / 1000;
  if (seconds <= 0) return null;
  const rates = {};
  let hits = 0;
  let lookups = 0;
  for (const r of RESULTS) {
    const delta = counts[r] - base.counts[r];
    rates[r] = delta / seconds;
    if (HITS.includes(r)) hits += delta;
    if (HITS.includes(r) || r === "MISS") lookups += delta;
  }
  const sample = { t: now, rates, hits, lookups };
  state.samples.push(sample);
  while (state.samples.length > 0 && state.samples[0].t < now - WINDOW_MS) state.samples.shift();
  return sample;
}

/// The oldest read at or after `since`, other than the newest; null with
/// fewer than two reads.
function readSince(since) {
  const reads = state.reads;
  if (reads.length < 2) return null;
  const found = reads.find((read) => read.t >= since);
  return found && found !== reads[reads.length - 1] ? found : reads[reads.length - 2];
}

function renderTraffic(stats, sample, now) {
  const body = $("results");
  body.replaceChildren();
  for (const r of RESULTS) {
    const row = el("tr");
    const name = el("td");
    name.append(el("span", null, "swatch " + r), document.createTextNode(r));
    const rate = el("td", sample ? formatRate(sample.rates[r]) : "–");
    rate.id = "rate-" + r;
    const count = el("td", formatInt(Number(stats.responses[r] || 0)));
    count.id = "count-" + r;
    count.dataset.value = String(Number(stats.responses[r] || 0));
    row.append(name, rate, count);
    body.append(row);
  }
  const series = RESULTS.map((r) => ({
    color: COLORS[r],
    name: r,
    points: state.samples.map((s) => [s.t, s.rates[r]]),
  }));
  drawChart($("rps-chart"), series, now, { height: 200, format: formatRate });

  // Hit ratio over the last minute, and as a line over the window.
  const minute = readSince(now - RATIO_WINDOW_MS);
  let hits = 0;
  let lookups = 0;
  if (minute) {
    for (const r of HITS) hits += Number(stats.responses[r] || 0) - minute.counts[r];
    lookups = hits + Number(stats.responses.MISS || 0) - minute.counts.MISS;
  }
  $("hit-ratio").textContent = formatPercent(lookups > 0 ? hits / lookups : null);
  $("hit-ratio-total").textContent = formatPercent(stats.hit_ratio);
  const points = state.samples.filter((s) => s.lookups > 0).map((s) => [s.t, (100 * s.hits) / s.lookups]);
  drawChart($("ratio-chart"), [{ color: COLORS.HIT, name: "hit ratio", points }], now, {
    width: 360,
    height: 150,
    left: 40,
    max: 100,
    format: (v) => v.toFixed(0) + " %",
  });
}

/// The smallest of 1, 2, 5 times a power of ten at or above `value`.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

/// A line chart of the last WINDOW_MS: one polyline per series, three
/// horizontal grid lines with their values, the time axis in minutes. The
/// viewBox width follows the card's, so labels keep about the same size.
function drawChart(target, series, now, options) {
  const width = options.width || 640;
  const height = options.height;
  const left = options.left || 52;
  const right = 8;
  const top = 8;
  const bottom = 20;
  target.setAttribute("viewBox", "0 0 " + width + " " + height);
  target.replaceChildren();
  let peak = 0;
  for (const s of series) for (const [, v] of s.points) peak = Math.max(peak, v);
  const max = options.max || niceMax(peak);
  const x = (t) => left + ((t - (now - WINDOW_MS)) / WINDOW_MS) * (width - left - right);
  const y = (v) => top + (1 - Math.min(v, max) / max) * (height - top - bottom);
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    target.append(svg("line", { class: "grid", x1: left, x2: width - right, y1: y(value), y2: y(value) }));
    const label = svg("text", { class: "label", x: left - 6, y: y(value) + 4, "text-anchor": "end" });
    label.textContent = options.format(value);
    target.append(label);
  }
  for (const [minutes, anchor] of [[5, "start"], [2.5, "middle"], [0, "end"]]) {
    const label = svg("text", { class: "label", x: x(now - minutes * 60000), y: height - 4, "text-anchor": anchor });
    label.textContent = minutes === 0 ? "now" : "−" + minutes + " min";
    target.append(label);
  }
  for (const s of series) {
    if (s.points.length < 2) continue;
    const d = s.points.map(([t, v], i) => (i === 0 ? "M" : "L") + x(t).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    const path = svg("path", { class: "series", d, stroke: s.color });
    path.dataset.series = s.name;
    target.append(path);
  }
}

function setBudget(prefix, used, limit, format) {
  const usedNode = $(prefix + "-used") || $(prefix);
  const limitNode = $(prefix + "-limit");
  usedNode.textContent = format(used);
  usedNode.dataset.value = String(used);
  limitNode.textContent = format(limit);
  limitNode.dataset.value = String(limit);
  const share = limit > 0 ? Math.min(1, used / limit) : 0;
  const bar = $(prefix + "-bar");
  bar.style.width = (share * 100).toFixed(1) + "%";
  bar.classList.toggle("high", share >= 0.8 && share < 0.95);
  bar.classList.toggle("critical", share >= 0.95);
}

function renderTiers(stats) {
  const memory = stats.memory;
  setBudget("memory", memory.used_bytes, memory.limit_bytes, formatBytes);
  $("memory-note").textContent =
    formatInt(memory.objects) + " objects · " + formatBytes(memory.bytes) + " of bodies · " +
    formatInt(memory.evictions) + " evictions";
  const disk = stats.disk;
  $("budget-disk").hidden = !disk;
  if (disk) {
    setBudget("disk", disk.objects_bytes, disk.limit_bytes, formatBytes);
    setBudget("disk-files", disk.files, disk.limit_files, formatInt);
    const note = $("disk-note");
    note.replaceChildren(
      document.createTextNode(
        formatInt(disk.blobs) + " bodies · " + formatInt(disk.hits) + " hits · " + formatInt(disk.evictions) +
          " evictions · " + formatInt(disk.corrupt) + " corrupt · " + formatInt(disk.write_errors) + " write errors" +
          (disk.scanned ? "" : " · scanning") + " ",
      ),
    );
    if (disk.full) note.append(el("span", "volume full", "badge full"));
  }
  setBudget("fill", stats.fill_buffer.used_bytes, stats.fill_buffer.limit_bytes, formatBytes);
  $("fills").textContent = formatInt(stats.fills_in_flight);
  $("fills").dataset.value = String(stats.fills_in_flight);
  $("fills-limit").textContent = formatInt(stats.fills_limit);
  $("fills-limit").dataset.value = String(stats.fills_limit);
  $("waiters").textContent = formatInt(stats.coalesced_waiters);
}

/// The mean latency between this read and the last one that saw new
/// responses; before there are two, the mean since start.
function memberLatency(site, member) {
  const key = site + "\u0000" + member.origin;
  const seen = state.latency.get(key);
  const count = Number(member.latency_count || 0);
  const total = Number(member.latency_us_total || 0);
  let recent = seen ? seen.recent : null;
  if (seen && count > seen.count && total >= seen.total) {
    recent = (total - seen.total) / (count - seen.count) / 1000;
  }
  state.latency.set(key, { count, total, recent });
  if (recent !== null) return { text: formatMs(recent), idle: false };
  if (count > 0) return { text: formatMs(total / count / 1000) + " avg", idle: true };
  return { text: "no responses yet", idle: true };
}

function renderOrigins(stats) {
  const table = $("origins");
  for (const old of table.querySelectorAll("tbody")) old.remove();
  for (const group of stats.origins) {
    const body = el("tbody");
    const head = el("tr", null, "site");
    const cell = el("th");
    cell.colSpan = 5;
    cell.append(
      el("strong", "site " + group.site),
      document.createTextNode(
        formatInt(group.requests) + " requests · " + formatInt(group.retries) + " retries · " +
          formatInt(group.failures) + " failures · " + formatInt(group.ejections) + " ejections · " +
          formatInt(group.holds) + " holds · " + formatInt(group.budget_exhausted || 0) + " retry-budget refusals · " +
          formatInt(group.relayed_errors || 0) + " origin 5xx relayed · " + formatInt(group.panic_routed || 0) +
          " panic\u2011routed",
      ),
    );
    head.append(cell);
    body.append(head);
    for (const member of group.members) {
      const row = el("tr", null, "member");
      row.dataset.origin = member.origin;
      const name = el("td", member.origin + (member.fallback ? " (fallback)" : ""));
      const breaker = el("td");
      breaker.append(el("span", member.breaker, "badge " + member.breaker));
      breaker.className = "breaker";
      const failures = el("td", formatInt(member.consecutive_failures), "num");
      const inUse = el("td", formatInt(member.in_use || 0), "num");
      const latency = memberLatency(group.site, member);
      const latencyCell = el("td", latency.text, "latency" + (latency.idle ? " idle" : ""));
      row.append(name, breaker, failures, inUse, latencyCell);
      body.append(row);
    }
    table.append(body);
  }
}

function renderPurges(stats) {
  const body = $("purges").querySelector("tbody");
  body.replaceChildren();
  const purges = stats.recent_purges || [];
  $("purges-empty").hidden = purges.length > 0;
  for (const purge of purges) {
    const row = el("tr", null, "purge");
    const at = new Date(purge.at_unix_ms);
    const ago = Math.max(0, (Date.now() - purge.at_unix_ms) / 1000);
    row.append(
      el("td", at.toLocaleTimeString() + " (" + formatDuration(ago) + " ago)"),
      el("td", purge.kind),
      el("td", purge.target === null ? "everything" : purge.target, "target"),
      el("td", purge.soft ? "soft" : "hard"),
      el("td", formatInt(purge.purged.memory), "num"),
      el("td", formatInt(purge.purged.disk), "num"),
      el("td", formatInt(purge.took_ms) + " ms", "num"),
    );
    body.append(row);
  }
}

// ---- start

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    if (!token) return;
    input.value = "";
    sessionStorage.setItem(TOKEN_KEY, token);
    resetHistory();
    $("login-error").textContent = "";
    setStatus("signing in…", false);
    poll();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    resetHistory();
    showLogin("");
  });
  if (sessionStorage.getItem(TOKEN_KEY)) poll();
  else showLogin("");
});
