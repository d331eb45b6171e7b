"""Reading a generated report site as a user's browser would: a page's links, ids, text and
tables, and a checker that every link of every page resolves inside the site."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse


class Page(HTMLParser):
    """What the checks need of a page: its links, ids, lang, title, headings, script elements,
    and the rows of its tables that have a class (each a list of its cells' text)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.duplicates: list[str] = []
        self.lang: str | None = None
        self.title = ""
        self.headings = 0
        self.scripts = 0
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._in_title = False
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "html":
            self.lang = values.get("lang")
        self._in_title = tag == "title"
        self.headings += tag in ("h1", "h2", "h3")
        self.scripts += tag == "script"
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(str(values[name]))
        if values.get("id"):
            if str(values["id"]) in self.ids:
                self.duplicates.append(str(values["id"]))
            self.ids.add(str(values["id"]))
        if tag == "table":
            self._table = values.get("class") or None
        elif tag == "tr" and self._table:
            self.tables.setdefault(self._table, []).append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        self.text.append(data)


def parse(text: str) -> Page:
    """A page's text, parsed."""
    page = Page()
    page.feed(text)
    return page


def broken_links(site: Path) -> tuple[int, list[str]]:
    """How many pages the site has, and every link that leaves it or finds no file (or no anchor)."""
    pages = {p: parse(p.read_text()) for p in site.rglob("*.html")}
    broken = []
    for path, page in pages.items():
        for link in page.links:
            url = urlparse(link)
            if url.scheme or url.netloc:
                broken.append(f"{path}: {link} leaves the site")
                continue
            target = (path.parent / unquote(url.path)).resolve() if url.path else path
            if not target.is_file() or not target.is_relative_to(site.resolve()):
                broken.append(f"{path}: {link}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in pages[target].ids:
                broken.append(f"{path}: {link} (no such anchor)")
    return len(pages), broken
