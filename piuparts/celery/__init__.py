"""Many machines: batch tests on Celery workers over a Redis broker.

The pieces (only :mod:`.executor` and :mod:`.worker` import Celery):

- :mod:`.broker`: the broker URL (refused without credentials), the Celery
  application both sides configure the same way (JSON only, late
  acknowledgement, prefetch of one), the Redis keys they share;
- :mod:`.payload`: what a task carries (a RunConfig and a subject as JSON,
  versioned, with an attempt id), checked by the worker before it runs
  anything, and what it answers;
- :mod:`.executor`: :class:`~.executor.CeleryExecutor`, the batch engine's
  second executor (beside :mod:`piuparts.batch.local`): leases, attempts,
  re-queueing of tests whose worker went silent, adoption of the tests of
  a coordinator that died;
- :mod:`.worker`: ``piuparts worker --broker URL``, the one task it accepts;
- :mod:`.seen`: the workers a coordinator has seen (``batch status``).

A package of its own rather than a module of :mod:`piuparts.batch`: it has
several parts, the worker side is not the batch engine's, and ``piuparts ci``
uses the same executor.
"""
