"""``piuparts batch``: nightly runs over whole archive sections.

The pieces, each usable on its own (``piuparts ci`` and the report build on
them):

- :mod:`.config`: the INI file (piuparts.conf's keys and meanings, plus
  ``repository``, ``packages`` and ``maintainer``), checked when it is read.
- :mod:`.archive`: a section's packages, read from its Packages files with
  python-debian (the mirror's, or a ``repository =`` line's).
- :mod:`.states`: the pure function that turns packages and results into
  piuparts.debian.org's states (``states.compute``).
- :mod:`.db`: the SQLite store of results (history kept), written by the
  coordinator alone.
- :mod:`.schedule`: what to test next (blocking-most first, retries with
  back-off, rescheduling of old results as piuparts-master does).
- :mod:`.problems`: known-problem names from structured findings, and
  piuparts-style ``.conf`` classes matched against the log.
- :mod:`.executor`: the Executor interface; :mod:`.local` its local
  process pool, :mod:`.worker` the worker process.
- :mod:`.engine`: the coordinator: one pass over sections with an executor.
- :mod:`.cli`: ``piuparts batch run|status|reschedule``.
"""
