"""What piuparts' own options change inside each instance, done there.

The cached base is never changed: these settings are written into the
instance (its overlay's upper layer, or the session), after the
post_chroot_unpack hooks and before the extra repositories and the
post_setup hooks, as piuparts 1.1.7 makes them after unpacking its chroot:

- apt's settings (``--install-recommends``, ``--install-suggests``,
  ``--dpkg-force-confdef``, ``--do-not-verify-signatures``,
  ``--no-check-valid-until``, ``--proxy``, ``--update-retries``) in
  ``/etc/apt/apt.conf.d/99piuparts-ng-options``, read after the base's
  own ``99piuparts``;
- dpkg's (``--dpkg-force-confdef``, ``--dpkg-noforce-unsafe-io``) in
  ``/etc/dpkg/dpkg.cfg.d/piuparts``;
- ``--no-eatmydata``: a pass-through ``eatmydata`` in /usr/local/bin
  (first on the instance's PATH), so libeatmydata is not preloaded;
- ``--allow-database``: a policy-rc.d that lets the database servers
  start (piuparts' list), and refuses every other service;
- ``/etc/apt/sources.list`` for a ready-made base (-b, -e, --schroot...)
  when -d or -m name the archive, as piuparts rewrites it (not with
  ``--keep-sources-list``; a piuparts.debian.org slave gives its
  section's distribution and mirror this way);
- ``apt-get update`` after those sources or post_chroot_unpack scripts
  changed the apt sources or keys (debusine's write its extra
  repositories there, and piuparts updates after them), tried again up to
  ``--update-retries`` times; with rewritten sources, ``apt-get -yf
  dist-upgrade`` after it, as piuparts does;
- ``--fake-essential-packages``: installed before the test, never removed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from piuparts.chroot import Chroot
from piuparts.errors import TestbedError

if TYPE_CHECKING:
    from piuparts.config import RunConfig
    from piuparts.hooks import Hooks

log = logging.getLogger("piuparts")

APT_CONF = "/etc/apt/apt.conf.d/99piuparts-ng-options"
DPKG_CFG = "/etc/dpkg/dpkg.cfg.d/piuparts"
EATMYDATA_SHIM = "/usr/local/bin/eatmydata"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
SOURCES_LIST = "/etc/apt/sources.list"
#: The services --allow-database lets start, as piuparts 1.1.7 does.
DATABASE_SERVICES = ("mariadb", "mysql", "postgresql", "postgresql-8.3", "firebird2.5-super", "firebird3.0")


def apt_conf(config: "RunConfig") -> str | None:
    """The apt settings the options ask for, or None when they ask for none."""
    lines = []
    if config.install_recommends:
        lines.append('APT::Install-Recommends "true";')
    if config.install_suggests:
        lines.append('APT::Install-Suggests "true";')
    if config.dpkg_force_confdef:
        lines.append('Dpkg::Options { "--force-confdef"; };')
    if config.allow_unauthenticated:
        lines += ['APT::Get::AllowUnauthenticated "true";', 'Acquire::AllowInsecureRepositories "true";']
    if not config.check_valid_until:
        lines.append('Acquire::Check-Valid-Until "false";')
    if config.proxy:
        lines.append(f'Acquire::http::Proxy "{config.proxy}";')
    if config.update_retries:
        lines.append(f'Acquire::Retries "{config.update_retries}";')
    if config.default_release:
        lines.append(f'APT::Default-Release "{config.default_release}";')
    return "".join(f"{line}\n" for line in ["// piuparts-ng: from the command line", *lines]) if lines else None


def dpkg_cfg(config: "RunConfig") -> str | None:
    """dpkg's settings, when they differ from the base's (force-unsafe-io alone)."""
    if config.dpkg_unsafe_io and not config.dpkg_force_confdef:
        return None
    lines = ["# piuparts-ng: from the command line"]
    lines += ["force-unsafe-io"] if config.dpkg_unsafe_io else []
    lines += ["force-confdef"] if config.dpkg_force_confdef else []
    return "".join(f"{line}\n" for line in lines)


def policy_rc_d(config: "RunConfig") -> str | None:
    """A policy-rc.d that lets the database servers start, with --allow-database."""
    if not config.allow_database:
        return None
    allowed = "".join(f'test "$1" = "{name}" && exit 0\n' for name in DATABASE_SERVICES)
    return f"#!/bin/sh\n# piuparts-ng: --allow-database\n{allowed}exit 101\n"


def changes_instances(config: "RunConfig") -> bool:
    """Whether the options change what an instance does (then the dependencies
    are installed in each test, not taken from a cached layer made without them)."""
    return any((apt_conf(config), dpkg_cfg(config), policy_rc_d(config), not config.eatmydata,
                config.fake_essential_packages, config.apt_sources))


def files(config: "RunConfig") -> dict[str, tuple[str, str]]:
    """Path inside -> (content, mode) of every file the options put into an instance."""
    wanted = {APT_CONF: (apt_conf(config), "0644"), DPKG_CFG: (dpkg_cfg(config), "0644"),
              POLICY_RC_D: (policy_rc_d(config), "0755"),
              EATMYDATA_SHIM: (None if config.eatmydata else
                               '#!/bin/sh\n# piuparts-ng: --no-eatmydata\nexec "$@"\n', "0755"),
              SOURCES_LIST: (config.apt_sources, "0644")}
    return {path: (text, mode) for path, (text, mode) in wanted.items() if text is not None}


def write(chroot: Chroot, path: str, text: str, mode: str) -> None:
    """Write ``path`` inside, through the instance itself (any backend)."""
    chroot.run(["sh", "-c", 'mkdir -p "${2%/*}" && printf "%s" "$1" > "$2" && chmod "$3" "$2"', "sh",
                text, path, mode], error=TestbedError, what=f"writing {path}", level=logging.DEBUG)


def prepare(chroot: Chroot, config: "RunConfig", hooks: "Hooks") -> None:
    """Everything the options change in a new instance (see the module's docstring)."""
    for path, (text, mode) in files(config).items():
        write(chroot, path, text, mode)
    hooked = any(name.startswith("post_chroot_unpack") for name in hooks.scripts)
    if (config.apt_sources or hooked) and sources_changed(chroot, "-d/-m" if config.apt_sources else
                                                           "post_chroot_unpack scripts"):
        apt_update(chroot, config.update_retries)
        if config.apt_sources:  # as piuparts does after writing a given base's sources: the base brought to them
            chroot.run(["apt-get", "-yf", "dist-upgrade"], timeout=config.max_command_runtime, error=TestbedError,
                       what=f"the dist-upgrade of the given base to {config.distribution}")
    if config.fake_essential_packages:
        packages = list(config.fake_essential_packages)
        log.info("Installing the fake essential packages (kept through the test): %s", " ".join(packages))
        chroot.run(["apt-get", "-y", "install", *packages], timeout=config.max_command_runtime,
                   error=TestbedError, what=f"installing --fake-essential-packages {','.join(packages)}")


#: What apt-get update reads besides apt's settings: where the sources are and the keys that sign them.
APT_SOURCES = ("etc/apt/sources.list", "etc/apt/sources.list.d", "etc/apt/trusted.gpg", "etc/apt/trusted.gpg.d",
               "etc/apt/keyrings", "usr/share/keyrings")


def _contents(top: Path) -> dict[str, bytes]:
    """Relative path -> content of the regular files (and link targets) under APT_SOURCES in ``top``."""
    found: dict[str, bytes] = {}
    for inner in APT_SOURCES:
        base = top / inner
        paths = [base] if not base.is_dir() or base.is_symlink() else sorted(base.rglob("*"))
        for path in paths:
            if path.is_symlink():
                found[str(path.relative_to(top))] = os.readlink(path).encode()
            elif path.is_file():
                found[str(path.relative_to(top))] = path.read_bytes()
    return found


def sources_changed(chroot: Chroot, by: str) -> bool:
    """Whether the instance's apt sources or keys differ from its base's (True
    when the backend cannot tell: then apt-get update runs, as in piuparts)."""
    if chroot.lower is None or not chroot.host_root:
        return True
    changed = _contents(chroot.root) != _contents(chroot.lower)
    if not changed:
        log.info("The %s left the apt sources as they were: no apt-get update needed", by)
    return changed


def apt_update(chroot: Chroot, retries: int = 0) -> None:
    """``apt-get update`` inside, tried ``retries`` more times; a last failure is the test bed's."""
    for attempt in range(retries + 1):
        result = chroot.run(["apt-get", "update"], timeout=900)
        if result.ok:
            return
        if attempt < retries:
            log.info("apt-get update failed (try %d of %d); trying again", attempt + 1, retries + 1)
    raise TestbedError(f"apt-get update of the instance's apt sources failed: {result.tail(1).strip()}")
