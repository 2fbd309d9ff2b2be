#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol through the admin
dashboard of a running node (.ci/dashboard starts it and puts load on it):

  check_dashboard.py --admin http://localhost:PORT --token-file FILE
                     --screenshot PNG [--history SECONDS]

It opens the page, checks it shows only the sign-in form, that a wrong
token is refused, signs in, waits (with a deadline) for a HIT count, reads
it again later and asserts it grew; asserts the origin rows (breaker,
latency), the tier budgets (numbers against limits), the rate chart and the
recent purges are rendered; that the page's responses carried the CSP and
nosniff, the data no-store, the token only in the Authorization header,
never in a URL or storage other than sessionStorage; and that nothing broke
the CSP or threw. Then it lets the charts fill for --history seconds and
saves a full-page screenshot. Exits non-zero naming the first failed check."""
import argparse
import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from websockets.sync.client import connect

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions", "--hide-scrollbars",
    "--remote-debugging-port=0", "--window-size=1280,1000",
    # No network here: resolve localhost to the node, fail every other name at once.
    "--host-resolver-rules=MAP localhost 127.0.0.1, MAP * ~NOTFOUND",
]


class Failure(Exception):
    pass


def wait_for(what, check, timeout):
    """Polls `check` until it returns a true value, or fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.2)


class Browser:
    """One headless Chromium and a DevTools connection to its page."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="holdfast-dashboard-")
        self.process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.stack = contextlib.ExitStack()
        self.next_id = 0
        self.events = []
        try:
            port_file = os.path.join(self.profile, "DevToolsActivePort")
            wait_for("Chromium's DevTools port",
                     lambda: os.path.exists(port_file) and open(port_file).read().strip(), 30)
            port = open(port_file).read().split()[0]
            targets = wait_for("a page target",
                               lambda: [t for t in self.targets(port) if t.get("type") == "page"], 15)
            self.ws = self.stack.enter_context(
                connect(targets[0]["webSocketDebuggerUrl"], max_size=256 * 1024 * 1024, open_timeout=15))
        except BaseException:
            self.close()
            raise

    @staticmethod
    def targets(port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
                return json.load(response)
        except OSError:
            return []

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        ident = self.next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Failure(f"DevTools call {method} timed out")
            message = json.loads(self.ws.recv(timeout=remaining))
            if message.get("id") == ident:
                if "error" in message:
                    raise Failure(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise Failure(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def close(self):
        try:
            self.stack.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def check(condition, message):
    if not condition:
        raise Failure(message)
    print(f"ok: {message}")


def sign_in(browser, token):
    browser.js(f"document.getElementById('token').value = {json.dumps(token)};"
               "document.getElementById('login-form').requestSubmit()")


def hit_count(browser):
    value = browser.js("(document.getElementById('count-HIT') || {dataset: {}}).dataset.value || ''")
    return int(value) if value and value.isdigit() else None


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def responses(browser, path):
    """The responses the page got for `path` (headers with lower-case names), from the Network events."""
    out = []
    for e in browser.events:
        if e["method"] == "Network.responseReceived" and urllib.parse.urlsplit(e["params"]["response"]["url"]).path == path:
            out.append(dict(e["params"]["response"], headers=lower(e["params"]["response"]["headers"])))
    return out


def run(browser, admin, token, screenshot, history):
    browser.call("Page.enable")
    browser.call("Runtime.enable")
    browser.call("Network.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=1000, deviceScaleFactor=1, mobile=False)
    browser.call("Page.addScriptToEvaluateOnNewDocument", source=(
        "window.__violations = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));"))
    browser.call("Page.navigate", url=admin + "/")
    wait_for("the page to load", lambda: browser.js("document.readyState") == "complete", 20)
    wait_for("the sign-in form", lambda: browser.js("!document.getElementById('login').hidden"), 10)
    check(browser.js("getComputedStyle(document.getElementById('dash')).display === 'none'"),
          "before sign-in the page shows no data")
    check(browser.js("[...document.scripts].every(s => s.src)"), "no inline script")

    sign_in(browser, "wrong-token-0123456789")
    refused = wait_for("the refusal of a wrong token",
                       lambda: browser.js("document.getElementById('login-error').textContent"), 10)
    check(browser.js("document.getElementById('dash').hidden && !sessionStorage.length"),
          f"a wrong token is refused ({refused!r}) and forgotten")

    sign_in(browser, token)
    first = wait_for("a HIT count above 0", lambda: (hit_count(browser) or 0) > 0 and hit_count(browser), 30)
    check(browser.js("getComputedStyle(document.getElementById('login')).display === 'none'"
                     " && getComputedStyle(document.getElementById('dash')).display !== 'none'"),
          f"signed in, the page shows {first} HITs and no longer the form")
    second = wait_for("the HIT count to grow", lambda: (hit_count(browser) or 0) > first and hit_count(browser), 30)
    check(second > first, f"the HIT count grew live: {first} -> {second}")

    members = browser.js("""[...document.querySelectorAll('#origins tr.member')].map(r => ({
        origin: r.dataset.origin, breaker: r.querySelector('.breaker').textContent,
        latency: r.querySelector('.latency').textContent}))""")
    check(members and all(m["origin"] and m["breaker"] in ("closed", "open", "half-open") for m in members),
          f"origin members with their breaker: {members}")
    wait_for("a member latency in ms", lambda: browser.js(
        "[...document.querySelectorAll('#origins .latency')].some(c => /[0-9.]+ ms/.test(c.textContent))"), 15)
    print("ok: origin latency shown: " + browser.js("document.querySelector('#origins .latency').textContent"))

    budgets = browser.js("""Object.fromEntries(['memory-used', 'memory-limit', 'disk-used', 'disk-limit', 'disk-files',
        'disk-files-limit', 'fill-used', 'fill-limit', 'fills', 'fills-limit'].map(id => {
        const e = document.getElementById(id); return [id, [e.dataset.value, e.textContent]]; }))""")
    numeric = all(v[0] is not None and v[0].isdigit() and any(c.isdigit() for c in v[1]) for v in budgets.values())
    limits = all(int(budgets[k][0]) > 0 for k in ("memory-limit", "disk-limit", "disk-files-limit", "fill-limit"))
    check(numeric and limits, f"tier budgets rendered as numbers against limits: {budgets}")
    check(int(budgets["memory-used"][0]) > 0, "the memory tier holds the demo assets")
    check(browser.js("!document.getElementById('budget-disk').hidden"), "the disk tier is shown")

    series = wait_for("a line on the rate chart", lambda: browser.js(
        "document.querySelectorAll('#rps-chart path.series').length"), 10)
    check(series >= 1, f"{series} lines on the requests-per-second chart")
    ratio = wait_for("a hit ratio over the last minute", lambda: browser.js(
        "/^[0-9.]+ %$/.test(document.getElementById('hit-ratio').textContent)"
        " && document.getElementById('hit-ratio').textContent"), 15)
    check(ratio, f"hit ratio shown: {ratio}")
    purges = browser.js("[...document.querySelectorAll('#purges tr.purge')].map(r => r.textContent)")
    check(len(purges) >= 1, f"recent purges listed: {purges}")
    node = browser.js("['node-version', 'node-config', 'node-uptime'].map(id => document.getElementById(id)"
                      ".textContent)")
    check(node[0] and "holdfast.toml" in node[1] and any(c.isdigit() for c in node[2]),
          f"version, config path and uptime: {node}")

    page = responses(browser, "/")
    check(page and "default-src 'self'" in page[-1]["headers"].get("content-security-policy", "")
          and page[-1]["headers"].get("x-content-type-options") == "nosniff", "the page came with its CSP and nosniff")
    script = responses(browser, "/dashboard/app.js")
    check(script and script[-1]["mimeType"] == "text/javascript", "the script is served as JavaScript")
    data = responses(browser, "/stats")
    check(data and data[-1]["headers"].get("cache-control") == "no-store", "the data is no-store")
    sent = [e["params"]["request"] for e in browser.events if e["method"] == "Network.requestWillBeSent"]
    check(not [r["url"] for r in sent if token in r["url"]], "the token is in no URL")
    check(any(lower(r["headers"]).get("authorization") == f"Bearer {token}" for r in sent
              if r["url"].endswith("/stats")), "the token goes in the Authorization header")
    check(browser.js("localStorage.length === 0 && document.cookie === '' && !location.href.includes('token')"),
          "nothing in localStorage, cookies or the location")
    violations = browser.js("window.__violations")
    check(violations == [], f"no Content-Security-Policy violation {violations}")
    thrown = [e["params"]["exceptionDetails"].get("text") for e in browser.events
              if e["method"] == "Runtime.exceptionThrown"]
    check(not thrown, f"no script error {thrown}")

    # Let the charts fill, still polling the page so a stall would show.
    deadline = time.monotonic() + history
    while time.monotonic() < deadline:
        if browser.js("document.getElementById('dash').hidden"):
            raise Failure("the dashboard went back to the sign-in form")
        time.sleep(1)
    third = hit_count(browser)
    check(third is not None and third >= second, f"still live after {history} s: {third} HITs")
    # As tall as the content, not the window.
    height = max(400, browser.js("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"))
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=int(height), deviceScaleFactor=1,
                 mobile=False)
    shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(f"ok: screenshot {screenshot} (1280x{int(height)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--history", type=float, default=10)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    token = open(args.token_file).read().strip()
    try:
        browser = Browser(args.chromium)
    except Failure as failure:
        print(f"dashboard check FAILED: {failure}")
        return 1
    try:
        run(browser, args.admin.rstrip("/"), token, args.screenshot, args.history)
    except Failure as failure:
        print(f"dashboard check FAILED: {failure}")
        return 1
    finally:
        browser.close()
    print("dashboard check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
