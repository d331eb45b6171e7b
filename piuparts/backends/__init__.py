"""Backends: how a throwaway Chroot comes to be.

Importing this package registers every backend module in it.
"""

from piuparts.backends.base import Backend, BaseSpec, Capabilities
from piuparts.backends import debootstrap  # noqa: F401  (registers itself)
from piuparts.backends import existing, tarball  # noqa: F401  (register themselves)
from piuparts.backends import schroot  # noqa: F401  (registers itself)
from piuparts.backends import lvm  # noqa: F401  (registers itself)

__all__ = ["Backend", "BaseSpec", "Capabilities"]
