"""The Backend protocol and its registry.

A backend prepares a base once (slow, cached) and hands out instances
cheaply.  An instance is a context manager yielding a
:class:`~piuparts.chroot.Chroot`; leaving the ``with`` block removes it,
also on an exception or Ctrl-C.  A backend registers by name with a class
keyword (``class Foo(Backend, name="foo")``) and says what it can do as
data (:class:`Capabilities`) so that callers never ask which class it is.

A backend also declares its own command-line options (:class:`Option`):
the parser adds them, the one that is given chooses the backend, and their
values travel in ``RunConfig.backend_options``, checked against the same
declaration.  A new backend is one new module in this package.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Mapping, Self, Sequence

from piuparts.chroot import Chroot
from piuparts.config import BACKEND_SETTINGS
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


@dataclass(frozen=True)
class Option:
    """A command-line option of one backend; its value is ``RunConfig.backend_options[dest]``.

    ``kind``: ``"str"``, ``"path"`` (made absolute, kept as a string) or ``"flag"``
    (true when given).  ``selects``: giving it chooses the backend (exactly one
    such option may be given); another option of the backend only applies
    with it.  ``default`` is what the backend reads when the option is absent.
    """

    flags: tuple[str, ...]
    dest: str
    help: str
    kind: str = "str"
    metavar: str | None = None
    selects: bool = True
    default: Any = None

    @property
    def spelling(self) -> str:
        """How messages name it (``-b``, ``-e/--existing-chroot``)."""
        return self.flags[0]


class Backend(ABC):
    """Makes a base once and throwaway instances of it."""

    registry: ClassVar[dict[str, type["Backend"]]] = {}
    #: Commands a backend adds to the command line (``piuparts schroot-setup ...``):
    #: name -> function of the remaining argv returning the exit code.
    subcommands: ClassVar[dict[str, Callable[[list[str]], int]]] = {}
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: The command-line options this backend adds (see :class:`Option`).
    options: ClassVar[tuple[Option, ...]] = ()
    #: Instances' commands get a network namespace with only a loopback (--no-network).
    no_network: bool = False

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            Backend.registry[name] = cls
            BACKEND_SETTINGS[name] = cls.check_settings  # RunConfig.from_json checks with it

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
    def add_arguments(cls, group: Any) -> None:
        """Add this backend's options to an argparse parser or group."""
        for option in cls.options:
            if option.kind == "flag":
                group.add_argument(*option.flags, dest=option.dest, action="store_true", help=option.help)
            else:
                group.add_argument(*option.flags, dest=option.dest, metavar=option.metavar, default=None,
                                   help=option.help + (f" (default: {option.default})" if option.default else ""))

    @classmethod
    def given(cls, args: argparse.Namespace) -> list[Option]:
        """This backend's options that ``args`` (from a parser it added them to) holds."""
        return [o for o in cls.options if getattr(args, o.dest, None) not in (None, False)]

    @classmethod
    def settings_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        """``RunConfig.backend_options`` from the parsed command line, checked (backends
        that must look at the host, a file or a directory, extend this)."""
        settings: dict[str, Any] = {}
        for option in cls.given(args):
            value = getattr(args, option.dest)
            settings[option.dest] = str(Path(value).absolute()) if option.kind == "path" else value
        return cls.check_settings(settings)

    @classmethod
    def check_settings(cls, settings: Any) -> dict[str, Any]:
        """``settings`` (JSON from a RunConfig) checked against the declared options."""
        if not isinstance(settings, Mapping):
            raise UsageError(f"run configuration: the {cls.name} backend's options are a JSON object")
        declared = {o.dest: o for o in cls.options}
        checked: dict[str, Any] = {}
        for key, value in settings.items():
            option = declared.get(key)
            if option is None:
                known = ", ".join(declared) or "none"
                raise UsageError(f"run configuration: the {cls.name} backend takes no option {key!r} "
                                 f"(its options: {known})")
            wanted: type = bool if option.kind == "flag" else str
            if type(value) is not wanted or (option.kind == "path" and not str(value).startswith("/")):
                what = {"flag": "true or false", "path": "an absolute path", "str": "a string"}[option.kind]
                raise UsageError(f"run configuration: the {cls.name} backend's {key!r} must be {what}")
            checked[key] = value
        return checked

    @classmethod
    def setting(cls, config: "RunConfig", dest: str) -> Any:
        """The value of this backend's option ``dest`` in ``config`` (its default when absent;
        a Path for a path option)."""
        (option,) = [o for o in cls.options if o.dest == dest]
        value = config.backend_options.get(dest, option.default)
        return Path(value) if option.kind == "path" and value is not None else value

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "Backend":
        """The backend as the command line asks for it (backends with options override this)."""
        return cls(spec, options.cache_dir).isolated(options)

    def isolated(self, options: "RunConfig") -> Self:
        """This backend with the isolation ``options`` asks for (every from_options ends with it)."""
        self.no_network = options.no_network
        return self

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


def choose(args: argparse.Namespace, default: str = "debootstrap") -> tuple[str, dict[str, Any]]:
    """The backend the parsed command line chooses (by the one selecting option given,
    else ``default``) and its ``backend_options``."""
    chosen = sorted(((option, backend) for backend in Backend.registry.values() for option in backend.given(args)
                     if option.selects), key=lambda pair: (pair[0].spelling.startswith("--"), pair[0].spelling))
    if len(chosen) > 1:
        raise UsageError(f"{chosen[0][0].spelling} and {chosen[1][0].spelling} contradict each other: each says "
                         "where the chroot comes from; give only one")
    name = chosen[0][1].name if chosen else default
    for backend in Backend.registry.values():
        if backend.name == name:
            continue
        for option in backend.given(args):
            selecting = "/".join(next(o for o in backend.options if o.selects).flags)
            raise UsageError(f"{option.flags[-1]} only applies to {selecting}")
    return name, Backend.registry[name].settings_from_args(args)


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
