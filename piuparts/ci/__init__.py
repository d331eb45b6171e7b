"""``piuparts ci``: test what is new in a reprepro repository, upgrading from the version it replaced.

The pieces:

- :mod:`.repository`: a reprepro repository (a directory, or an ``http://``
  URL) read with python-debian: its codenames, components, architectures
  and the binary packages of one codename and architecture.
- :mod:`.changes`: the pure comparison of what the repository holds with
  what the last run tested (new, changed with the version replaced, removed).
- :mod:`.state`: the state directory of one codename: what was tested, the
  kept .debs (the notifier's and our own copies), pending notifier events,
  the results database (the batch engine's), the logs.
- :mod:`.notify`: the reprepro ``Log:`` notifier (standard library only, so
  it returns in milliseconds; it never fails the upload).
- :mod:`.run`: one pass over the changes through the batch engine's
  executor (local worker processes), results written as they arrive.
- :mod:`.junit`, :mod:`.report`: JUnit XML, JSON, the HTML page, the summary line.
- :mod:`.cli`: ``piuparts ci REPO --codename X``, ``ci notify``, ``ci run-pending``.
"""
