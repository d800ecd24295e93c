"""Headless Chromium (Debian's `chromium`), driven over the DevTools
protocol with python3-websocket: open a page, evaluate JavaScript in it,
collect what went wrong (console errors, uncaught exceptions, failed or
refused requests), take a screenshot.

Why not playwright-core: it is a second npm install for the tests, and
it pins the browser revision it speaks to; the five DevTools domains used
here (Page, Runtime, Log, Network, Emulation) are stable, and the test
stays in the suite's one language, with Debian's packages only.

Chromium runs with a fresh, empty profile and its background services
off (no sync, updates, field trials or QUIC): this machine refuses the
hosts they would call, and a test must not depend on them anyway.
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM = os.environ.get("AGW_CHROMIUM", "/usr/bin/chromium")

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps",
         "--no-default-browser-check", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--force-device-scale-factor=1",
         "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0")


def available():
    """Chromium and python3-websocket (scripts/deps.sh test)."""
    try:
        import websocket  # noqa: F401  (only: is it there)
    except ImportError:
        return False
    return os.access(CHROMIUM, os.X_OK)


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium with one page (tab).  `problems` lists, as text, every
    console error, uncaught exception, error log entry and failed request
    (HTTP status >= 400, or a load that failed) since the last
    `take_problems()`; `requests` every URL the page asked for."""

    def __init__(self, width=1280, height=900):
        import websocket    # python3-websocket; imported here, so the
        #                     suite still loads where it is missing
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="agw-chromium-")
        self.log_path = os.path.join(self.profile, "chromium.log")
        self.problems = []
        self.requests = []
        self.events = []
        self._id = 0
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, "--user-data-dir=" + self.profile,
                 "--window-size=%d,%d" % (width, height), "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            port = self._devtools_port()
            page = self._page_target(port)
            self.ws = websocket.create_connection(
                page["webSocketDebuggerUrl"], timeout=30,
                suppress_origin=True)
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.send(domain + ".enable")
            self.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height,
                       "deviceScaleFactor": 1, "mobile": False})
        except Exception:
            self.close()
            raise

    # -- start-up ------------------------------------------------------

    def _devtools_port(self, timeout=30):
        """Chromium writes the port it chose into the profile."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError("chromium exited (%s):\n%s"
                                   % (self.proc.returncode, self.log()))
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise BrowserError("chromium wrote no DevToolsActivePort:\n"
                           + self.log())

    def _page_target(self, port):
        url = "http://127.0.0.1:%d/json/list" % port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url, timeout=5) as r:
                targets = json.load(r)
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]
            time.sleep(0.05)
        raise BrowserError("chromium shows no page target")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    # -- the protocol --------------------------------------------------

    def _recv(self, deadline):
        import websocket
        self.ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def send(self, method, params=None, timeout=30):
        self._id += 1
        mid = self._id
        self.ws.send(json.dumps({"id": mid, "method": method,
                                 "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    raise BrowserError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self._event(msg)
        raise BrowserError("%s: no answer in %ss" % (method, timeout))

    def pump(self, seconds):
        """Take the events of the next `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is not None and "method" in msg:
                self._event(msg)

    def _event(self, msg):
        method, p = msg["method"], msg.get("params", {})
        self.events.append(method)
        if method == "Runtime.consoleAPICalled" and \
                p.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", "")))
                            for a in p.get("args", []))
            self.problems.append("console.%s: %s" % (p["type"], args))
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.problems.append("exception: %s %s" % (
                d.get("text", ""),
                d.get("exception", {}).get("description", "")))
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") in ("error", "warning"):
                self.problems.append("log %s (%s): %s %s" % (
                    e.get("level"), e.get("source"), e.get("text"),
                    e.get("url", "")))
        elif method == "Network.requestWillBeSent":
            self.requests.append(p.get("request", {}).get("url", ""))
        elif method == "Network.responseReceived":
            r = p.get("response", {})
            if r.get("status", 0) >= 400:
                self.problems.append("HTTP %s: %s" % (r.get("status"),
                                                      r.get("url")))
        elif method == "Network.loadingFailed":
            self.problems.append("request failed: %s %s" % (
                p.get("errorText"), p.get("blockedReason", "")))

    def take_problems(self):
        out, self.problems = self.problems, []
        return out

    # -- what tests use ------------------------------------------------

    def goto(self, url, timeout=30):
        """Open `url` and wait for its load event."""
        self.events = []
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise BrowserError("navigate %s: %s" % (url, r["errorText"]))
        deadline = time.monotonic() + timeout
        while "Page.loadEventFired" not in self.events:
            if time.monotonic() > deadline:
                raise BrowserError("%s did not load in %ss" % (url, timeout))
            self.pump(0.1)

    def eval(self, expression, timeout=30):
        """The value of a JavaScript expression (a promise is awaited);
        an exception in it raises BrowserError."""
        r = self.send("Runtime.evaluate",
                      {"expression": expression, "returnByValue": True,
                       "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise BrowserError("%s: %s" % (
                d.get("text"), d.get("exception", {}).get("description")))
        return r.get("result", {}).get("value")

    def wait_for(self, expression, timeout=20, interval=0.2):
        """Evaluate until the expression is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError("still false after %ss: %s"
                                   % (timeout, expression))
            self.pump(interval)

    def screenshot(self, path):
        """The whole page as a PNG at `path` (the viewport stretched to
        the page's height, then put back)."""
        h = self.eval("Math.ceil(document.documentElement.scrollHeight)")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": int(h),
                   "deviceScaleFactor": 1, "mobile": False})
        self.pump(0.5)          # the charts take the new size
        png = self.send("Page.captureScreenshot", {"format": "png"})
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height,
                   "deviceScaleFactor": 1, "mobile": False})
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(png["data"]))
        return path

    def close(self):
        ws = getattr(self, "ws", None)
        if ws is not None:
            try:
                self.send("Browser.close", timeout=5)
            except Exception:
                pass
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
