"""Backends: how a throwaway Chroot comes to be.

Importing this package imports every module in it, and each backend class
registers itself (``class Foo(Backend, name="foo")``) with its options and
capabilities: a new backend is one new file here.
"""

import importlib
import pkgutil

from piuparts.backends.base import Backend, BaseSpec, Capabilities, Option

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["Backend", "BaseSpec", "Capabilities", "Option"]
