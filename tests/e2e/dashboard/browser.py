"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, and a small DOM reader.

The dashboard asks for a login on every page: :class:`Browser` sends it as an ``Authorization``
header on every request (``Network.setExtraHTTPHeaders``), waits until the page's callbacks have
settled, and records what went wrong on the way (HTTP errors, script exceptions, console errors).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
WIDTH, HEIGHT = 1440, 1100

# the page is settled when Dash has no request in flight and every graph has been drawn
SETTLED_JS = """(() => {
  const page = document.querySelector('#page .page');
  if (!page) return false;
  if (document.querySelector('[data-dash-is-loading="true"]')) return false;
  const graphs = document.querySelectorAll('.dash-graph').length;
  const drawn = document.querySelectorAll('.dash-graph .js-plotly-plot .main-svg').length;
  if (drawn < graphs) return false;
  return document.documentElement.outerHTML.length;
})()"""


def chromium() -> str | None:
    """Path of the chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageProblems:
    """What went wrong while a page loaded."""

    http: list[str] = field(default_factory=list)  # "<status> <url>"
    exceptions: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        """Every problem, one line each."""
        return self.http + self.exceptions + self.console


class Browser:
    """One headless Chromium with one tab; every request carries ``headers``."""

    def __init__(self, headers: dict[str, str] | None = None, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        binary = chromium()
        assert binary, "chromium missing (apt-get install chromium)"
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="hft-chromium-", ignore_cleanup_errors=True)
        self._log = Path(self._profile.name + ".log")
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}/profile", "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its renderer and helper processes go with it on close
            )
        ws_url = self._devtools_url()
        self.ws = connect(ws_url, max_size=None, open_timeout=timeout)
        self._id = 0
        self.problems = PageProblems()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Network.enable", "Runtime.enable"):
            self.call(method, session=True)
        self.call("Network.setExtraHTTPHeaders", {"headers": headers or {}}, session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )

    def _devtools_url(self) -> str:
        # chromium writes its DevTools port and browser path into the profile once it listens
        active = Path(self._profile.name) / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            lines = active.read_text().split() if active.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        log = self._log.read_text(errors="replace")[-2000:] if self._log.exists() else ""
        self.close()
        raise AssertionError(f"chromium gave no DevTools port: {log}")

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: bool = False
    ) -> dict[str, Any]:
        """Send one DevTools command and return its result (events that arrive meanwhile are recorded)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{method}: no answer from chromium within {self.timeout:.0f}s"
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                result: dict[str, Any] = reply.get("result", {})
                return result
            self._event(reply)

    def _event(self, ev: dict[str, Any]) -> None:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Network.responseReceived":
            r = p.get("response", {})
            if int(r.get("status", 0)) >= 400 and not r.get("url", "").endswith("/favicon.ico"):
                self.problems.http.append(f"{r.get('status')} {r.get('url')}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.problems.exceptions.append(str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.problems.console.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            )

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        got = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return got.get("result", {}).get("value")

    def open(self, url: str, settle_s: float = 1.5) -> PageProblems:
        """Load ``url`` and wait until its callbacks have settled (the DOM stops changing)."""
        self.problems = PageProblems()
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + self.timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            state = self.evaluate(SETTLED_JS)
            now = time.monotonic()
            if state and state == last:
                if now - since >= settle_s:
                    return self.problems
            else:
                last, since = state, now
            time.sleep(0.25)
        raise AssertionError(
            f"{url} did not settle within {self.timeout:.0f}s; problems: {self.problems.all()}"
        )

    def dom(self) -> str:
        """The page's current HTML."""
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page (beyond the window's height)."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        shot = self.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": WIDTH, "height": max(HEIGHT, size["height"]), "scale": 1},
            },
            session=True,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Stop chromium and drop its profile."""
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._profile.cleanup()
        self._log.unlink(missing_ok=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Node:
    """An element of the dumped DOM."""

    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        """The element's CSS classes."""
        return set(self.attrs.get("class", "").split())

    def walk(self) -> list[Node]:
        """This node and every descendant, depth first."""
        out = [self]
        for c in self.children:
            out += c.walk()
        return out

    def all_text(self) -> str:
        """The text of this node and its descendants."""
        return " ".join(t for n in self.walk() for t in n.text).strip()

    def find(self, id_: str) -> Node | None:
        """The descendant with this id."""
        return next((n for n in self.walk() if n.attrs.get("id") == id_), None)

    def by_class(self, cls: str, tag: str | None = None) -> list[Node]:
        """Descendants carrying a class (and tag)."""
        return [n for n in self.walk() if cls in n.classes and (tag is None or n.tag == tag)]


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.stack[-1].text.append(data.strip())


def parse(html: str) -> Node:
    """Parse dumped HTML into a Node tree."""
    b = _Builder()
    b.feed(html)
    return b.root


def plotted_traces(graph: Node) -> list[Node]:
    """The drawn traces of a Plotly graph: SVG groups of class ``trace`` holding a path or points."""
    traces = []
    for g in graph.by_class("trace", "g"):
        drawn = [n for n in g.walk() if n.tag == "path" and len(n.attrs.get("d", "")) > 2]
        if drawn:
            traces.append(g)
    return traces


def table_rows(table: Node) -> int:
    """Rows of data shown by a Dash DataTable (or a plain table's body)."""
    cells = [n for n in table.walk() if n.tag == "td"]
    rows = [n for n in table.walk() if n.tag == "tr" and any(c.tag == "td" for c in n.children)]
    return len(rows) if rows else (1 if cells else 0)
