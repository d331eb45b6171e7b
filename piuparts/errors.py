"""The three kinds of failure, each carrying its exit code.

Library code raises these; only :mod:`piuparts.cli` turns them into an exit
status.  A test-bed failure (mirror down, debootstrap broken, a mount that
fails) is never the package's fault: batch runs retry it instead of
blaming the package.
"""


class PiupartsError(Exception):
    """Base of every error the harness reports as a one-line message."""

    exit_code = 3


class PackageFailed(PiupartsError):
    """The package under test did something wrong (exit 1)."""

    exit_code = 1


class UsageError(PiupartsError):
    """The arguments or the configuration are wrong (exit 2)."""

    exit_code = 2


class TestbedError(PiupartsError):
    """The test bed failed: mirror, backend, host (exit 3)."""

    exit_code = 3

    __test__ = False  # not a pytest test class


class Interrupted(BaseException):
    """A signal (SIGTERM, SIGHUP) stopped the run.

    Derived from BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` on the way up can swallow it; the context managers
    unwind and clean up as it passes.  The exit code is 128 + the signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.exit_code = 128 + signum
