"""Generating the site: :func:`generate` (the layout is in the package's docstring)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote

import jinja2

from piuparts.batch import report as batch_report, states as st
from piuparts.batch.config import Config
from piuparts.batch.db import Database
from piuparts.errors import UsageError
from piuparts.report.html import data, model, svg
from piuparts.report.html.look import ORDER, SEVERITIES, STYLE, VERDICTS
from piuparts.report.html.output import Output
from piuparts.report.html.parallel import quiet_worker

HERE = Path(__file__).parent
#: Runs listed on the index page.
LATEST_RUNS = 10
#: Entries of the feed.
FEED_ENTRIES = 200
#: Pages of a kind from which they are rendered in several processes.
PARALLEL_FROM = 500


@dataclass(frozen=True)
class Written:
    """What a generation did."""

    outdir: Path
    written: int
    unchanged: int
    seconds: float
    #: The files written (paths inside the site).
    files: tuple[str, ...] = ()

    def line(self) -> str:
        """The summary line."""
        return (f"piuparts report: {self.written} files written, {self.unchanged} unchanged, "
                f"in {self.outdir} ({self.seconds:.1f} s)")


_GENERATION: str | None = None


def generation() -> str:
    """A digest of what makes every page: the templates, the style and this package's code
    (another version renders every page again)."""
    global _GENERATION
    if _GENERATION is None:
        digest = hashlib.sha256()
        for path in sorted([*HERE.glob("*.py"), *HERE.glob("*.css"), *(HERE / "templates").iterdir()]):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        _GENERATION = digest.hexdigest()
    return _GENERATION


def environment() -> jinja2.Environment:
    """The templates, autoescaping HTML and XML, with the filters they use."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(["html", "xml", "atom"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["url"] = lambda path: quote(path, safe="/+@")
    env.filters["utc"] = model.utc
    env.globals.update(STYLE=STYLE, VERDICTS=VERDICTS, SEVERITIES=SEVERITIES, ORDER=ORDER,
                       package_url=model.package_url, source_url=model.source_url)
    return env


class Generator:
    """One generation of the site from a :class:`~.model.Site`."""

    def __init__(self, site: model.Site, out: Output, processes: int = 1) -> None:
        self.site = site
        self.out = out
        self.env = environment()
        self.processes = processes
        self.sources: dict[str, list[model.Binary]] = {}
        #: (section, package) -> the digest of what its pages show of it (see :meth:`keys`).
        self.binary_keys: dict[tuple[str, str], str] = {}

    def page(self, template: str, relative: str, fingerprint: str | None = None, **context: Any) -> None:
        """Render ``template`` to ``relative`` (links in it are relative to the page)."""
        root = "../" * relative.count("/")
        text = self.env.get_template(template).render(root=root, page=relative, origin=self.site.origin, **context)
        self.out.write(relative, text, fingerprint)

    def json(self, relative: str, document: Any, fingerprint: str | None = None) -> None:
        """Write a JSON document: compact (the C encoder: indenting is ten times slower), keys sorted,
        so an unchanged one is byte for byte the same."""
        self.out.write(relative, json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n", fingerprint)

    def fingerprint(self, material: Any) -> str:
        """The digest of a page's inputs: ``material`` (plain values whose ``repr`` says all the
        page shows), the site's origin, and the code and templates that render it."""
        return hashlib.sha256(repr((generation(), self.site.origin, material)).encode()).hexdigest()[:32]

    def skip(self, fingerprint: str, *relatives: str) -> bool:
        """True, and the files kept as they are, when each of ``relatives`` is up to date."""
        if not all(self.out.fresh(relative, fingerprint) for relative in relatives):
            return False
        for relative in relatives:
            self.out.keep(relative, fingerprint)
        return True

    def digests(self, binaries: Iterable[model.Binary]) -> list[str]:
        """The :meth:`keys` of ``binaries``."""
        return [self.binary_keys[b.section, b.name] for b in binaries]

    def keys(self) -> None:
        """The digest of each binary as its pages show it: its own fields, the states of what blocks
        it, and its results by :attr:`~.model.Test.key` (a result row never changes once written)."""
        for section in self.site.sections.values():
            for binary in section.binaries.values():
                blockers = tuple((d, section.binaries[d].state if d in section.binaries else None)
                                 for d in binary.blocked_by)
                material = (binary.section, binary.name, binary.version, binary.source, binary.maintainer,
                            binary.description, binary.state, tuple(binary.blocked_by), binary.blocks,
                            tuple(binary.problems), binary.reason, binary.gone, blockers,
                            tuple(t.key for t in binary.tests))
                self.binary_keys[binary.section, binary.name] = hashlib.sha256(repr(material).encode()).hexdigest()

    def all(self, summary: dict[str, Any]) -> None:
        """Every page of the site."""
        self.out.write("style.css", (HERE / "style.css").read_text())
        self.keys()
        self.index()
        for section in self.site.sections.values():
            self.section(section)
        self.people()
        self.runs()
        self.feed()
        self.json("summary.json", summary)

    def index(self) -> None:
        """index.html."""
        graphs = {name: svg.graph(s.days, s.series, f"{name}: packages in each state, a day a point")
                  for name, s in self.site.sections.items()}
        self.page("index.html", "index.html", site=self.site, graphs=graphs,
                  runs=self.site.runs[:LATEST_RUNS])

    def section(self, section: model.Section) -> None:
        """A section's pages: its index, a page a state, a page a problem, a page a package."""
        graph = svg.graph(section.days, section.series, f"{section.name}: packages in each state, a day a point")
        self.page("section.html", f"{section.name}/index.html", section=section, graph=graph)
        head = (section.name, section.description, section.distro, section.repository, section.counts, section.size)
        for state in st.STATES:
            binaries = section.by_state(state)
            relative = f"{section.name}/state/{state}.html"
            fingerprint = self.fingerprint((head, state, self.digests(binaries)))
            if not self.skip(fingerprint, relative):
                self.page("state.html", relative, fingerprint, section=section, state=state, binaries=binaries)
        for problem in section.problems.values():
            relative = f"{section.name}/{problem.url}"
            fingerprint = self.fingerprint((head, problem.name, problem.header, problem.helptext, problem.issue,
                                            self.digests(problem.packages)))
            if not self.skip(fingerprint, relative):
                self.page("problem.html", relative, fingerprint, section=section, problem=problem)
        self.in_parallel([("package", section.name, name) for name in section.binaries])

    def in_parallel(self, jobs: list[Job]) -> None:
        """Render many pages of one kind, in :attr:`processes` forked processes when there are
        enough of them to be worth it (the site's data is shared copy-on-write)."""
        if self.processes < 2 or len(jobs) < PARALLEL_FROM:
            for job in jobs:
                self.job(job)
            return
        global _FORKED
        _FORKED = self
        chunks = [jobs[i::self.processes * 4] for i in range(self.processes * 4)]
        try:
            with multiprocessing.get_context("fork").Pool(self.processes, initializer=quiet_worker) as pool:
                for written, unchanged, kept, inputs in pool.imap_unordered(_chunk, chunks):
                    self.out.written.extend(written)
                    self.out.unchanged += unchanged
                    self.out.kept.extend(kept)
                    self.out.inputs.update(inputs)
        finally:
            _FORKED = None

    def job(self, job: Job) -> None:
        """One page of :meth:`in_parallel`'s list."""
        kind, first, second = job
        if kind == "package":
            section = self.site.sections[first]
            self.package(section, section.binaries[second])
        else:
            binaries = self.sources[first]
            relative = model.source_url(first)
            fingerprint = self.fingerprint((first, list(self.site.sections),
                                            self.digests(binaries)))
            if not self.skip(fingerprint, relative):
                self.page("source.html", relative, fingerprint, source=first, rows=_rows(binaries),
                          sections=list(self.site.sections), history=_history(binaries))

    def package(self, section: model.Section, binary: model.Binary) -> None:
        """A package's page, its JSON and its logs (a log never changes once filed, so the
        tails shown are the results' keys' too)."""
        logs = {t.id: self.out.log(t.log_stem, Path(t.log_source)) for t in binary.tests
                if t.log_stem and t.log_source}
        page, document = binary.url, model.package_url(section.name, binary.name, ".json")
        fingerprint = self.fingerprint((self.binary_keys[section.name, binary.name], sorted(logs.items())))
        if self.skip(fingerprint, page, document):
            return
        tails = {t.id: data.log_tail(t) for t in binary.tests if t.verdict != "PASS"}
        self.page("package.html", page, fingerprint, section=section, binary=binary, logs=logs, tails=tails,
                  tests=list(reversed(binary.tests)))
        self.json(document, package_json(binary, logs), fingerprint)
        for test in binary.tests:
            test.forget()

    def people(self) -> None:
        """A page a source package, a page a maintainer, and the maintainers' list."""
        sources: dict[str, list[model.Binary]] = {}
        maintainers: dict[str, tuple[model.Person, list[model.Binary]]] = {}
        for binary in self.site.binaries():
            sources.setdefault(binary.source, []).append(binary)
            maintainers.setdefault(binary.maintainer.slug, (binary.maintainer, []))[1].append(binary)
        self.sources = sources
        self.in_parallel([("source", source, "") for source in sorted(sources)])
        table = []
        changes: dict[tuple[str, str], list[model.Change]] = {}
        for change in self.site.changes:
            changes.setdefault((change.section, change.package), []).append(change)
        for slug, (who, binaries) in sorted(maintainers.items()):
            rows = _rows(binaries)
            fingerprint = self.fingerprint((who, list(self.site.sections),
                                            self.digests(binaries)))
            if not self.skip(fingerprint, who.url):
                self.page("maintainer.html", who.url, fingerprint, who=who, rows=rows,
                          sections=list(self.site.sections), counts=_counts(binaries), history=_history(binaries))
            mine = sorted((c for b in binaries for c in changes.get((b.section, b.name), ())),
                          key=lambda c: c.after.id, reverse=True)
            self.feed(who.url.removesuffix(".html") + ".atom", mine, who)
            table.append((who, _counts(binaries), len(rows)))
        self.page("maintainers.html", "maintainers.html", maintainers=table)

    def runs(self) -> None:
        """runs.html and a page (with JSON and JUnit) a run."""
        self.page("runs.html", "runs.html", runs=self.site.runs)
        for run in self.site.runs:
            files = [run.url, f"run/{run.id}.json", f"run/{run.id}.junit.xml"]
            if run.ci is not None and run.ci.report_json:
                files.append(f"run/{run.id}.ci.json")
            ci = None if run.ci is None else (
                run.ci, [c.get("package") in self.site.sections[f"{run.ci.codename}.{run.ci.architecture}"].binaries
                         if f"{run.ci.codename}.{run.ci.architecture}" in self.site.sections else None
                         for c in run.ci.changes])
            fingerprint = self.fingerprint((run.id, run.kind, run.started, run.ended, run.host, run.tool_version,
                                            run.status, list(self.site.sections), ci,
                                            [(t.key, t.section, t.package, run.previous.get(t.id)) for t in run.tests]))
            if self.skip(fingerprint, *files):
                continue
            self.page("run.html", run.url, fingerprint, run=run, sections=self.site.sections,
                      words=model.CHANGE_WORDS)
            self.json(f"run/{run.id}.json", run_json(run), fingerprint)
            if run.ci is not None and run.ci.junit_xml:  # the very files the CI job was given
                self.out.write(f"run/{run.id}.junit.xml", run.ci.junit_xml, fingerprint)
            else:
                self.out.write(f"run/{run.id}.junit.xml", run_junit(run), fingerprint)
            if run.ci is not None and run.ci.report_json:
                self.out.write(f"run/{run.id}.ci.json", run.ci.report_json, fingerprint)

    def feed(self, relative: str = "feed.atom", changes: list[model.Change] | None = None,
             who: model.Person | None = None) -> None:
        """An Atom feed of state changes, newest first: the whole site's, or a maintainer's."""
        entries = (self.site.changes if changes is None else changes)[:FEED_ENTRIES]
        fingerprint = self.fingerprint((relative, who, [(c.section, c.package, c.before.key, c.before.problems,
                                                         c.after.key, c.after.problems) for c in entries]))
        if self.skip(fingerprint, relative):
            return
        updated = max((c.after.started + c.after.duration for c in entries), default=0.0)
        self.page("feed.atom", relative, fingerprint, entries=entries, updated=model.iso(updated or 0.0),
                  iso=model.iso, who=who, self_href=relative.rsplit("/", 1)[-1])


#: (page kind, section or source, package): one page for :meth:`Generator.in_parallel`.
Job = tuple[str, str, str]
#: The generator a forked process renders with (set just before the fork).
_FORKED: Generator | None = None


def _chunk(jobs: list[Job]) -> tuple[list[str], int, list[str], dict[str, str]]:
    """In a forked process: render ``jobs``; the files written, how many were unchanged, all it kept."""
    assert _FORKED is not None
    _FORKED.out = Output(_FORKED.out.root, _FORKED.out.known)
    for job in jobs:
        _FORKED.job(job)
    return _FORKED.out.written, _FORKED.out.unchanged, _FORKED.out.kept, _FORKED.out.inputs


def _rows(binaries: Iterable[model.Binary]) -> list[tuple[str, dict[str, model.Binary]]]:
    """A binary's name and its entry in each section; the ones that need a person first."""
    rows: dict[str, dict[str, model.Binary]] = {}
    for binary in binaries:
        rows.setdefault(binary.name, {})[binary.section] = binary
    worst = {name: min(ORDER.index(b.state) for b in entry.values()) for name, entry in rows.items()}
    return sorted(rows.items(), key=lambda item: (worst[item[0]], item[0]))


def _counts(binaries: Iterable[model.Binary]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for binary in binaries:
        tally[binary.state] = tally.get(binary.state, 0) + 1
    return {state: tally[state] for state in ORDER if state in tally}


def _history(binaries: Iterable[model.Binary], limit: int = 50) -> list[model.Test]:
    tests = [t for b in binaries for t in b.tests]
    return sorted(tests, key=lambda t: t.id, reverse=True)[:limit]


def package_json(binary: model.Binary, logs: dict[int, bool]) -> dict[str, Any]:
    """A package's JSON: its state and every result, whole."""
    return {"section": binary.section, "package": binary.name, "version": binary.version,
            "source": binary.source, "maintainer": binary.maintainer.label, "description": binary.description,
            "state": binary.state, "blocked_by": binary.blocked_by, "problems": list(binary.problems),
            "results": [{"id": t.id, "version": t.version, "architecture": t.architecture, "kind": t.kind,
                         "verdict": t.verdict, "started": t.started, "duration": t.duration, "worker": t.worker,
                         "run": t.run_id, "problems": list(t.problems),
                         "log": f"{t.log_stem}.log.gz" if logs.get(t.id) else None, "result": t.details.data}
                        for t in binary.tests]}


def run_json(run: model.Run) -> dict[str, Any]:
    """A run's JSON: when, and each test's verdict."""
    ci = run.ci
    repository = {} if ci is None else {
        "ci": {"codename": ci.codename, "architecture": ci.architecture, "repository": ci.repository,
               "components": ci.components, "changes": ci.changes, "summary": ci.summary, "exit_code": ci.exit_code,
               "report": f"{run.id}.ci.json" if ci.report_json else None}}
    return {"id": run.id, "kind": run.kind, "started": run.started, "ended": run.ended, "host": run.host,
            **repository,
            "status": run.status, "tool_version": run.tool_version, "verdicts": run.verdicts,
            "tests": [{"section": t.section, "package": t.package, "version": t.version,
                       "previous_version": run.previous.get(t.id, ""), "kind": t.kind, "verdict": t.verdict,
                       "duration": t.duration, "problems": list(t.problems), "error": t.error,
                       "page": model.package_url(t.section, t.package)} for t in run.tests]}


def run_junit(run: model.Run) -> str:
    """A run as JUnit XML: a test suite a tested package, a test case a scenario."""
    import xml.etree.ElementTree as ET

    from piuparts.report import junit
    from piuparts.scenarios import ScenarioResult
    root = ET.Element("testsuites", name=f"piuparts-ng run {run.id}")
    for test in run.tests:
        scenarios = [ScenarioResult.from_json(s) for s in test.details.data.get("scenarios", [])]
        test.forget()  # a night's run holds every package's result: parse them one at a time
        tree = junit.document(scenarios, [test.package], f"{test.section}/{test.package} {test.version}")
        suites = tree.getroot()
        assert suites is not None
        for suite in list(suites):
            if test.verdict == "ERROR":
                ET.SubElement(suite, "system-err").text = f"{test.kind}: {test.error or ''}"
            root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def summary(site_runs: Any) -> dict[str, Any]:
    """piuparts' summary.json, its URLs pointing at this site's source pages (with the section as anchor)."""
    document = batch_report.summary(site_runs)
    document.pop("_date", None)  # the index says when; a summary that did not change is not rewritten
    for source, entries in document["packages"].items():
        for key, entry in entries.items():
            entry[2] = model.source_url(source) + ("" if key == "overall" else f"#{key}")
    return document


def site_summary(site: model.Site) -> dict[str, Any]:
    """summary.json from the site's own data (a site made without a batch configuration)."""
    packages: dict[str, dict[str, list[Any]]] = {}
    for binary in site.binaries():
        if binary.gone:
            continue
        for key in (binary.section, "overall"):
            url = model.source_url(binary.source) + ("" if key == "overall" else f"#{key}")
            entry = [batch_report.FLAGS[binary.state], binary.blocks, url]
            old = packages.setdefault(binary.source, {}).get(key)
            packages[binary.source][key] = entry if old is None else batch_report._worse(old, entry)
    return {"_id": "Piuparts Package Test Results Summary", "_version": "1.0", "_type": "source",
            "_comment": f"piuparts-ng results, from {site.origin}", "packages": packages}


def generate(config: Config, outdir: Path, names: Sequence[str] | None = None,
             now: float | None = None, processes: int | None = None) -> Written:
    """Write the site of the sections ``names`` (default: all) into ``outdir``, rendering
    in ``processes`` processes (default: one a CPU, at most 4); then remove what the site no
    longer links to in those sections' directories and the source, maintainer and run ones."""
    if not config.db.is_file():
        raise UsageError(f"{config.db}: no state database yet; run 'piuparts batch run {config.path}' first")

    def load(db: Database, processes: int) -> tuple[model.Site, dict[str, Any]]:
        site, prepared = data.load(config, list(names or config.sections), db, now, processes)
        return site, summary(prepared)
    return _generate(config.db, outdir, load, processes)


def generate_listed(db_path: Path, listings: Sequence[model.Listing], outdir: Path, now: float | None = None,
                    processes: int | None = None, title: str = "Package test results") -> Written:
    """The same site without a batch configuration: the results and runs of the database at
    ``db_path``, its sections as ``listings`` describe them (``piuparts ci --html``)."""
    if not db_path.is_file():
        raise UsageError(f"{db_path}: no state database yet; nothing has been tested")

    def load(db: Database, processes: int) -> tuple[model.Site, dict[str, Any]]:
        site = data.load_listed(listings, db, now, processes, title)
        return site, site_summary(site)
    return _generate(db_path, outdir, load, processes)


def _generate(db_path: Path, outdir: Path, load: Callable[[Database, int], tuple[model.Site, dict[str, Any]]],
              processes: int | None) -> Written:
    """Load the site's data, write every page, prune what it no longer links to."""
    start = time.monotonic()
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: not a directory; give the directory the site goes in")
    processes = min(4, os.cpu_count() or 1) if processes is None else processes
    with Database(db_path) as db:
        site, document = load(db, processes)
    out = Output.begin(outdir)
    Generator(site, out, processes).all(document)
    out.prune([*site.sections, "source", "maintainer", "run"])
    out.finish()
    return Written(outdir, len(out.written), out.unchanged, time.monotonic() - start, tuple(out.written))
