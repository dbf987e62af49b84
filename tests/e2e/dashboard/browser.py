"""Headless Chromium (Debian's ``chromium``) for the dashboard test, and a small DOM reader."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1440,1100",
]


def chromium() -> str | None:
    """Path of the chromium binary, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(url: str, action: list[str], budget_ms: int, timeout: float) -> subprocess.CompletedProcess[str]:
    binary = chromium()
    assert binary, "chromium missing (apt-get install chromium)"
    with tempfile.TemporaryDirectory(prefix="hft-chromium-") as profile:
        return subprocess.run(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                *action,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def dump_dom(url: str, budget_ms: int = 8000, timeout: float = 150) -> str:
    """The DOM after the page ran for ``budget_ms`` of virtual time (callbacks, Plotly)."""
    proc = _run(url, ["--dump-dom"], budget_ms, timeout)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.stdout, f"chromium dumped nothing: {proc.stderr[-2000:]}"
    return proc.stdout


def screenshot(url: str, path: Path, budget_ms: int = 8000, timeout: float = 150) -> Path:
    """Save a PNG of the page after ``budget_ms`` of virtual time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = _run(url, [f"--screenshot={path}"], budget_ms, timeout)
    assert proc.returncode == 0, f"screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert path.exists(), f"no screenshot written: {proc.stderr[-2000:]}"
    return path


def capture(url: str, png: Path, budget_ms: int = 8000, timeout: float = 150) -> str:
    """Save a PNG of ``url`` and return its DOM, each after ``budget_ms`` of virtual time.

    Two runs: asked for both in one run, chromium 150 never finished the System page.
    """
    png.unlink(missing_ok=True)
    screenshot(url, png, budget_ms, timeout)
    return dump_dom(url, budget_ms, timeout)


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
