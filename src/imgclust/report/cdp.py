"""A tiny headless-Chromium driver speaking the DevTools protocol over ``--remote-debugging-pipe``.

Used by the browser test and ``benchmarks/report.py`` to open a report from ``file://``, dispatch
real (trusted) mouse events, read console errors and take screenshots. The pipe transport needs
no websocket library and no TCP port: Chromium reads NUL-terminated JSON messages from fd 3 and
writes its replies and events to fd 4.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "CDPError", "find_chromium", "HEADLESS_FLAGS"]

HEADLESS_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--mute-audio", "--hide-scrollbars", "--no-default-browser-check")


class CDPError(RuntimeError):
    """The browser answered a command with an error, died, or did not answer in time."""


def find_chromium() -> str | None:
    """``$IMGCLUST_CHROMIUM``, else the first Chromium/Chrome on ``PATH``, else None."""
    env = os.environ.get("IMGCLUST_CHROMIUM")
    if env and os.path.exists(env):
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """One headless Chromium with one page attached.

    Args:
        binary: Browser executable (default :func:`find_chromium`).
        width: Window width in CSS pixels.
        height: Window height in CSS pixels.
        timeout: Default seconds to wait for an answer.

    Attributes:
        events: Every protocol event received so far (method + params), in order.
    """

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 900, timeout: float = 30.0):
        binary = binary or find_chromium()
        if not binary:
            raise CDPError("no Chromium found (apt-get install chromium, or set IMGCLUST_CHROMIUM)")
        self.timeout = timeout
        self.events: list[dict] = []
        self._buf = b""
        self._next_id = 0
        self._profile = tempfile.mkdtemp(prefix="imgclust-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds():  # runs in the child: fd 3 = commands in, fd 4 = replies out
            # Copy to fds >= 5 first: a plain dup may return 3 or 4 itself, and dup2(3, 3) would
            # keep the close-on-exec flag.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 5)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 5)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        args = [binary, *HEADLESS_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}", "about:blank"]
        self._log = open(os.path.join(self._profile, "chromium.log"), "wb")
        # close_fds=False: fds are non-inheritable by default (PEP 446), so only the two set up in
        # wire_fds (dup2 makes them inheritable) reach Chromium. pass_fds=(3, 4) would need fds
        # 3 and 4 to exist in this process already.
        self.proc = subprocess.Popen(args, close_fds=False, preexec_fn=wire_fds, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        try:
            targets = self.call("Target.getTargets", session=False)["targetInfos"]
            page = next((t for t in targets if t["type"] == "page"), None)
            target = page["targetId"] if page else self.call("Target.createTarget", {"url": "about:blank"},
                                                             session=False)["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                     session=False)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except Exception:
            self.close()
            raise

    # -- transport ---------------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise CDPError(f"Chromium exited (code {self.proc.poll()}); log: {self.log_tail()}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def _on_event(self, msg: dict) -> None:
        self.events.append(msg)
        if msg.get("method") == "Page.javascriptDialogOpening":
            # An alert() would block the page forever: record it (tests fail on it) and dismiss it.
            self._send("Page.handleJavaScriptDialog", {"accept": False}, msg.get("sessionId"))

    def _send(self, method: str, params: dict | None, session: str | None) -> int:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def call(self, method: str, params: dict | None = None, *, session: bool = True,
             timeout: float | None = None) -> dict:
        """Send one command and wait for its result (events received meanwhile are kept)."""
        mid = self._send(method, params, self.session if session else None)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})
            if "method" in msg:
                self._on_event(msg)

    def pump(self, seconds: float = 0.05) -> None:
        """Read the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read_message(deadline)
                if "method" in msg:
                    self._on_event(msg)
        except CDPError as exc:
            if "timed out" not in str(exc):
                raise

    # -- page helpers ------------------------------------------------------------------
    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """Evaluate JS in the page and return its value (JSON-able)."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": await_promise})
        if "exceptionDetails" in res:
            det = res["exceptionDetails"]
            raise CDPError(f"JS error: {det.get('exception', {}).get('description') or det.get('text')}")
        return res.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        """Load ``url`` in the page."""
        self.call("Page.navigate", {"url": url})

    def wait_for(self, expression: str, timeout: float = 20.0, interval: float = 0.02) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"timed out waiting for: {expression}")
            self.pump(interval)

    def mouse_move(self, x: float, y: float) -> None:
        """Move the mouse to page coordinates (hover)."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y, "button": "none"})

    def click(self, x: float, y: float) -> None:
        """A real left click (move, press, release) at viewport coordinates."""
        self.mouse_move(x, y)
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                   "buttons": 1 if kind == "mousePressed" else 0,
                                                   "clickCount": 1})

    def screenshot(self, path: str | os.PathLike, full_page: bool = False) -> Path:
        """Save a PNG of the viewport (or the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            m = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": m["width"], "height": min(m["height"], 16000), "scale": 1}
        data = self.call("Page.captureScreenshot", params, timeout=60)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions, failed loads and CSP violations seen so far."""
        out = []
        for ev in self.events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def dialogs(self) -> list[str]:
        """Messages of every JavaScript dialog the page opened."""
        return [ev["params"].get("message", "") for ev in self.events
                if ev.get("method") == "Page.javascriptDialogOpening"]

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` bytes of Chromium's log (for failure messages)."""
        try:
            return Path(self._profile, "chromium.log").read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """Close the browser (gracefully, then by force) and remove its temporary profile."""
        if self.proc.poll() is None:
            try:
                self._send("Browser.close", None, None)
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)  # our own process group (start_new_session)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
