"""A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (standard library only).

Chromium started with ``--remote-debugging-pipe`` reads protocol commands from its file descriptor 3
and writes replies and events to descriptor 4, each message JSON ending with a NUL byte. That is
enough to drive a real page from a test: real mouse clicks and typing (``Input``), downloads into a
folder (``Browser.setDownloadBehavior``), a file chosen in an ``<input type=file>``
(``DOM.setFileInputFiles``), screenshots — without Selenium, a driver binary or a network port.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

#: Flags for a headless Chromium on a machine without network or display (as root in a container).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--remote-debugging-pipe"]  # fmt: skip


class CdpError(RuntimeError):
    """A protocol error reply, or no reply in time."""


class Browser:
    """One headless Chromium driven through the pipe; use as a context manager."""

    def __init__(self, executable: str, profile: Path, *, width: int = 1400, height: int = 1000, timeout: float = 60.0) -> None:
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        high = [os.dup(fd) for fd in (cmd_r, out_w)]  # above 4, so the dup2 below cannot clobber one of them

        def child_fds() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=child_fds,
        )  # fmt: skip
        for fd in (cmd_r, out_w, *high):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False)
        except (CdpError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("no message from Chromium in time")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                chunk = os.read(self._out_r, 1 << 16)
                if not chunk:
                    raise CdpError("Chromium closed the pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send a command (to the attached page unless ``session=False``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CdpError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, url: str) -> None:
        """Open ``url`` in a new tab, attach to it and wait until the page is loaded."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.send("Page.enable")
        self.navigate(url)

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('samples')")

    def reload(self) -> None:
        self.send("Page.reload", {"ignoreCache": True})
        time.sleep(0.2)
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('samples')")

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page (JSON-able)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]}: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"!!({expression})"):
            if time.monotonic() > deadline:
                raise CdpError(f"timed out waiting for {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real left click (mouse pressed and released) at the centre of the element."""
        x, y = self.evaluate(
            f"(function(){{var e=document.querySelector({json.dumps(selector)});e.scrollIntoView({{block:'center'}});"
            "var r=e.getBoundingClientRect();return [r.x+r.width/2,r.y+r.height/2];})()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def type_text(self, selector: str, text: str) -> None:
        """Click into a text field and type ``text`` (as an input method would)."""
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def choose_file(self, selector: str, path: Path) -> None:
        """Choose ``path`` in the ``<input type=file>`` at ``selector`` (fires its change event)."""
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(path)]})

    def allow_downloads(self, folder: Path) -> None:
        self.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder), "eventsEnabled": True}, session=False)

    def screenshot(self, path: Path, selector: str | None = None, *, height: int | None = None) -> None:
        """PNG of the viewport, or of the box from the top of ``selector`` (``height`` CSS pixels tall)."""
        params: dict[str, Any] = {"format": "png"}
        if selector:
            x, y, w, h = self.evaluate(
                f"(function(){{var e=document.querySelector({json.dumps(selector)});e.scrollIntoView({{block:'start'}});"
                "var r=e.getBoundingClientRect();return [r.x+window.scrollX,r.y+window.scrollY,r.width,r.height];})()"
            )
            params["clip"] = {"x": max(0, x - 8), "y": max(0, y - 8), "width": w + 16, "height": (height or h) + 16, "scale": 1}
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", params)["data"]))
