"""The Backend protocol and its registry.

A backend prepares a base once (slow, cached) and hands out instances
cheaply.  An instance is a context manager yielding a
:class:`~piuparts.chroot.Chroot`; leaving the ``with`` block removes it,
also on an exception or Ctrl-C.  A backend registers by name with a class
keyword (``class Foo(Backend, name="foo")``) and says what it can do as
data (:class:`Capabilities`) so that callers never ask which class it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Sequence

from piuparts.chroot import Chroot
from piuparts.errors import UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig


@dataclass(frozen=True)
class BaseSpec:
    """What a base is made of; its :meth:`key` names the cached base."""

    distribution: str
    mirror: str
    architecture: str
    components: tuple[str, ...] = ("main",)
    extra_packages: tuple[str, ...] = ()
    variant: str = "minbase"

    def key(self) -> str:
        """A short stable hash of every field, to name the cached base."""
        data = json.dumps(asdict(self), sort_keys=True).encode()
        return f"{self.distribution}-{self.architecture}-{hashlib.sha256(data).hexdigest()[:12]}"


@dataclass(frozen=True)
class Capabilities:
    """What a backend's instances offer, as data.

    ``host_root``: the instance's files are visible from the host;
    ``upper_dir``: its changes can be read from an overlay upper directory;
    ``layers``: its instances take extra lower layers (see piuparts.layers).
    """

    host_root: bool
    upper_dir: bool
    #: Instances can stack cached read-only layers over the base (overlays).
    layers: bool = False


class Backend(ABC):
    """Makes a base once and throwaway instances of it."""

    registry: ClassVar[dict[str, type["Backend"]]] = {}
    #: Commands a backend adds to the command line (``piuparts schroot-setup ...``):
    #: name -> function of the remaining argv returning the exit code.
    subcommands: ClassVar[dict[str, Callable[[list[str]], int]]] = {}
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            Backend.registry[name] = cls

    def __init__(self, spec: BaseSpec, cache_dir: Path) -> None:
        if not cache_dir.is_absolute():
            raise UsageError(f"the cache directory must be an absolute path, not {cache_dir}")
        self.spec = spec
        self.cache_dir = cache_dir
        self._prepared = False
        #: The time limit of a command in an instance that names none (--max-command-runtime).
        self.command_timeout: float = 1800.0

    @classmethod
    def create(cls, name: str, spec: BaseSpec, cache_dir: Path, **options: Any) -> "Backend":
        """The backend registered as ``name``."""
        try:
            backend_class = cls.registry[name]
        except KeyError:
            known = ", ".join(sorted(cls.registry))
            raise UsageError(f"unknown backend {name!r}; known backends: {known}") from None
        return backend_class(spec, cache_dir, **options)

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "Backend":
        """The backend as the command line asks for it (backends with options override this)."""
        return cls(spec, options.cache_dir)

    @classmethod
    def unavailable(cls) -> str | None:
        """None when this backend can run on this machine, else why not (for --list-backends)."""
        return None

    def prepare(self) -> None:
        """Make sure the base exists and is fresh (slow the first time)."""
        ensure_writable(self.cache_dir)
        self._do_prepare()
        self._prepared = True

    @contextmanager
    def instance(self, layers: Sequence[Path] = ()) -> Iterator[Chroot]:
        """A throwaway instance of the base, removed when the block ends;
        ``layers`` (topmost first) lie over the base where ``capabilities.layers``."""
        if not self._prepared:
            self.prepare()
        if layers and not self.capabilities.layers:
            raise TypeError(f"the {self.name} backend does not stack layers")
        with self._do_instance(layers) as chroot:
            if chroot.timeout is None:
                chroot.timeout = self.command_timeout
            yield chroot

    def close(self) -> None:
        """Release what the backend holds (locks on its base)."""

    def describe(self) -> dict[str, Any]:
        """What the report says about the base: its identity, and its age where known."""
        return {"backend": self.name}

    def save(self, tarball: Path) -> None:
        """Write the prepared base as a tarball that ``-b`` takes (``-s/--save``)."""
        raise UsageError(f"-s/--save: the {self.name} backend cannot save its base as a tarball")

    @abstractmethod
    def _do_prepare(self) -> None: ...

    @abstractmethod
    def _do_instance(self, layers: Sequence[Path]) -> Any:
        """A context manager yielding a new instance with ``layers`` over the
        base (always empty unless ``capabilities.layers``)."""


def ensure_writable(directory: Path) -> None:
    """Create ``directory`` if needed; a one-line error if it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"cannot write to the cache directory {directory} ({err.strerror}); "
            "free some space or choose another with --cache-dir") from None
