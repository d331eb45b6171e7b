"""The report site: static pages made from the batch state database.

``piuparts report CONFIG OUTDIR`` (and ``piuparts batch run --report
OUTDIR``, and ``piuparts ci --html OUTDIR`` from a CI state database)
writes, with links relative so the site also opens from the file system::

    index.html                      every section's counts, graphs, the latest runs
    summary.json                    piuparts.debian.org's summary (by source package)
    feed.atom                       state changes: pass -> fail, fail -> pass, a new version's first verdict
    runs.html, run/ID.html          each run: what it tested, what changed, the verdicts
    run/ID.json, run/ID.junit.xml   the same for tools (a CI run's JUnit is its own --junit file)
    run/ID.ci.json                  a CI run's own --json report
    maintainers.html                every maintainer, with counts
    maintainer/P/ADDRESS.html       a maintainer's packages in every section
    maintainer/P/ADDRESS.atom       the state changes of their packages
    source/P/SOURCE.html            a source package's binaries in every section
    SECTION/index.html              the section's counts, graph and known problems
    SECTION/state/STATE.html        the packages in a state
    SECTION/problem/NAME.html       a known problem: its help text and its packages
    SECTION/package/P/NAME.html     a package: every version tested, steps, findings, logs
    SECTION/package/P/NAME.json     the same for tools
    SECTION/log/P/NAME/ID.log.gz    a result's log (and .log.txt, plain)

(P is piuparts.debian.org's prefix directory: ``libf`` for libfoo, else the
first letter.)  The templates are Jinja2 files, one a page kind, with
autoescaping on: everything that comes from a package is escaped.  No
JavaScript.  A page is written only when its content changed, and files
the site no longer links to are removed from the directories above.

The modules: :mod:`.model` is what the pages show (plain objects), :mod:`.data`
fills it (from the database and the sections as ``piuparts batch`` reads
them, or as a caller lists them: :class:`.model.Listing`), :mod:`.site` renders and writes
(:func:`.site.generate`, :func:`.site.generate_listed` without a batch
configuration), :mod:`.svg` draws the graph,
:mod:`.look` gives each state its word, icon and colour, :mod:`.output`
writes only what changed, :mod:`.parallel` forks for the big page kinds,
:mod:`.cli` is ``piuparts report``.
"""
