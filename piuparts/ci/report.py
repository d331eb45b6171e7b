"""The JSON report and the plain HTML page of a CI pass."""

from __future__ import annotations

import html
import time
from pathlib import Path

from piuparts.ci.junit import describe
from piuparts.ci.run import Report
from piuparts.ci.state import write_json


def write_json_report(path: Path, report: Report) -> None:
    """The JSON report (the RunResults, what changed)."""
    write_json(path, report.to_json())


def _row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def page(report: Report) -> str:
    """One plain HTML page: what changed, each test's verdict, findings and log."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.started))
    title = f"piuparts ci: {report.codename} {report.arch}, {when}"
    rows = []
    for outcome in report.outcomes:
        result = outcome.result
        verdict = result.verdict if result else "NOT RUN"
        findings = [f"{f.severity.upper()} [{f.check}] {f.line()}" for f in (result.findings if result else [])]
        if result is not None and result.error:
            findings.append(result.error)
        log_link = f'<a href="file://{html.escape(outcome.log_file)}">log</a>' if outcome.log_file else ""
        rows.append(_row([html.escape(outcome.unit.name), html.escape(verdict),
                          "<br>".join(html.escape(x) for x in describe(outcome).splitlines()),
                          "<br>".join(html.escape(x) for x in findings), log_link]))
    changes = [_row([html.escape(c.kind), html.escape(c.name), html.escape(c.binary.version if c.binary else ""),
                     html.escape(c.old_version or "")]) for c in report.changes]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(report.repository)} {html.escape(' '.join(report.components))}</p>
<p><strong>{html.escape(report.summary())}</strong></p>
<h2>Tests</h2>
<table border="1"><tr><th>package</th><th>verdict</th><th>versions</th><th>findings</th><th>log</th></tr>
{''.join(rows)}
</table>
<h2>Changes since the last run</h2>
<table border="1"><tr><th>change</th><th>package</th><th>version</th><th>replaced</th></tr>
{''.join(changes)}
</table>
</body></html>
"""


def write_html(directory: Path, report: Report) -> Path:
    """The run's page (``DIRECTORY/ci-STAMP.html``) and ``index.html``, the latest; the page's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.started))
    path = directory / f"ci-{report.codename}-{report.arch}-{stamp}.html"
    text = page(report)
    path.write_text(text)
    (directory / "index.html").write_text(text)
    return path
