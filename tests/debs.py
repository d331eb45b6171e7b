"""Fixture packages, built by the tests with dpkg-deb from small specs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DebSpec:
    """A tiny binary package: its files and maintainer scripts."""

    name: str
    version: str = "1.0-1"
    #: Path -> content (bytes for a binary file, a compiled helper).
    files: dict[str, str | bytes] = field(default_factory=dict)
    scripts: dict[str, str] = field(default_factory=dict)
    depends: str = ""
    description: str = "piuparts test fixture"
    maintainer: str = "Fixture Maker <fixtures@example.org>"
    #: Paths (among ``files``) that dpkg treats as conffiles.
    conffiles: tuple[str, ...] = ()
    #: Paths (among ``files``) installed executable (mode 0755).
    executables: tuple[str, ...] = ()
    #: Ship /usr/share/doc/NAME/copyright (adequate, when the host has it, reports its absence).
    copyright: bool = True
    #: The Source field (empty: the package's own name).
    source: str = ""

    def build(self, outdir: Path) -> Path:
        """Build ``NAME_VERSION_all.deb`` in ``outdir`` and return its path."""
        tree = outdir / f"{self.name}-{self.version}.tree"
        debian = tree / "DEBIAN"
        debian.mkdir(parents=True)
        control = [f"Package: {self.name}", f"Version: {self.version}", "Architecture: all",
                   f"Maintainer: {self.maintainer}", "Priority: optional", "Section: misc"]
        if self.depends:
            control.append(f"Depends: {self.depends}")
        if self.source:
            control.append(f"Source: {self.source}")
        control.append(f"Description: {self.description}")
        (debian / "control").write_text("\n".join(control) + "\n")
        if self.conffiles:
            (debian / "conffiles").write_text("".join(f"{path}\n" for path in self.conffiles))
        for name, body in self.scripts.items():
            script = debian / name
            script.write_text("#!/bin/sh\nset -e\n" + body + "\n")
            script.chmod(0o755)
        files: dict[str, str | bytes] = {f"/usr/share/doc/{self.name}/README": f"{self.name} fixture\n", **self.files}
        if self.copyright:
            files.setdefault(f"/usr/share/doc/{self.name}/copyright", "Fixture of piuparts-ng's tests; no rights.\n")
        for path, content in files.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
            if path in self.executables:
                target.chmod(0o755)
        deb = outdir / f"{self.name}_{self.version}_all.deb"
        deb.unlink(missing_ok=True)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(deb)],
                       check=True, capture_output=True)
        return deb


@dataclass(frozen=True)
class LinkSpec(DebSpec):
    """A :class:`DebSpec` that also ships symlinks (path -> target)."""

    links: dict[str, str] = field(default_factory=dict)

    def build(self, outdir: Path) -> Path:
        """Put the links in the tree that :meth:`DebSpec.build` packs, then build."""
        tree = outdir / f"{self.name}-{self.version}.tree"
        for path, target in self.links.items():
            link = tree / path.lstrip("/")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(target)
        deb = super().build(outdir)
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
        assert all(f".{path} -> {target}" in listing for path, target in self.links.items()), listing
        return deb


CLEAN = DebSpec("pp-clean", files={"/usr/share/pp-clean/data.txt": "data\n"})
LEFTOVER = DebSpec("pp-leftover", scripts={
    "postinst": 'if [ "$1" = configure ]; then mkdir -p /etc/x; echo generated > /etc/x/generated.conf; fi'})
FAILING_POSTINST = DebSpec("pp-failpostinst", scripts={
    "postinst": 'echo "pp-failpostinst: refusing to configure" >&2; exit 1'})
SLOW_POSTINST = DebSpec("pp-slowpostinst", scripts={"postinst": "sleep 60"})
# Leave a diversion, ship no copyright file.
DIVERTER = DebSpec("pp-diverter", scripts={
    "postinst": 'dpkg-divert --package pp-diverter --add --rename --divert /usr/bin/cmp.pp /usr/bin/cmp'})
NO_COPYRIGHT = DebSpec("pp-nocopyright", files={"/usr/share/pp-nocopyright/data": "data\n"}, copyright=False)
# One defect each that piuparts-master's known_problems name.
ALTERNATIVE_LEFT = DebSpec("pp-altleft", scripts={
    "postinst": 'update-alternatives --install /usr/bin/pp-altleft pp-altleft /bin/true 10'})
USR_LOCAL_LEFT = DebSpec("pp-usrlocal", scripts={
    "postinst": 'if [ "$1" = configure ]; then mkdir -p /usr/local/share/pp && echo x > /usr/local/share/pp/x; fi'})
NOT_FOUND = DebSpec("pp-notfound", scripts={"postinst": 'pp-no-such-command --configure'})
FAILING_PRERM = DebSpec("pp-failprerm", scripts={"prerm": 'echo "pp-failprerm: refusing" >&2; exit 1'})
OVERWRITER = DebSpec("pp-overwriter", files={"/etc/debian_version": "pp\n"})
# A link of its own to nowhere: the symlinks check and adequate's broken-symlink both see it.
BROKEN_LINK = LinkSpec("pp-brokenlink", links={"/usr/share/pp-brokenlink/dangling": "nothing-here"})
# Changes the base in every way an overlay records: a whiteout, an opaque
# directory, a metadata-only change, a content change, a new symlink.
RESHAPER = DebSpec("pp-reshaper", scripts={"postinst": """\
rm -f /etc/debian_version
rm -rf /etc/skel && mkdir /etc/skel && echo new > /etc/skel/new
chmod 0600 /etc/issue
echo changed >> /etc/issue.net
ln -s /nonexistent /etc/dangling"""})
DAEMON = DebSpec("pp-daemon", scripts={
    "postinst": 'setsid sleep 600 </dev/null >/dev/null 2>&1 &'})
# Fails unless its postinst runs in a PID namespace of its own: PID 1 is the
# instance's holder, and no host process is visible.
PIDNS_PROBE = DebSpec("pp-pidns-probe", scripts={"postinst": """\
grep -q sleep /proc/1/cmdline || { echo "PID 1 is $(cat /proc/1/cmdline): the host's namespace" >&2; exit 1; }
n=$(ls /proc | grep -c '^[0-9]')
[ "$n" -lt 15 ] || { echo "sees $n processes" >&2; exit 1; }"""})

# Prints its namespaces (compared by the test with the host's) and fails when
# it can chroot back out, mount, or write a sysctl (the value it already has).
NS_PROBE = DebSpec("pp-ns-probe", scripts={"postinst": """\
if [ "$1" = configure ]; then
    for ns in pid mnt uts ipc net; do echo "pp-ns $ns $(readlink /proc/self/ns/$ns)"; done
    ! perl -e 'mkdir "/tmp/pp-out"; chroot "/tmp/pp-out" or exit 1' || { echo "can chroot" >&2; exit 1; }
    ! mount -t tmpfs pp-ns-probe /mnt 2>/dev/null || { echo "can mount" >&2; exit 1; }
    value=$(cat /proc/sys/fs/lease-break-time)
    ! (echo "$value" > /proc/sys/fs/lease-break-time) 2>/dev/null || { echo "can write sysctls" >&2; exit 1; }
    ! hostname pp-ns-probe 2>/dev/null || { echo "can set the hostname" >&2; exit 1; }
fi"""})


def make_repo(directory: Path, debs: list[Path]) -> str:
    """A flat apt repository of ``debs`` in ``directory``; returns its --extra-repo line."""
    import hashlib
    import shutil
    directory.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        shutil.copy2(deb, directory / deb.name)
    packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=directory, check=True,
                              capture_output=True, text=True).stdout
    (directory / "Packages").write_text(packages)
    data = packages.encode()
    (directory / "Release").write_text(
        "Origin: piuparts-tests\nLabel: piuparts-tests\nSuite: tests\nCodename: tests\n"
        f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} Packages\n")
    return f"deb [trusted=yes] file://{directory} ./"

def reprepro(repo: Path, debs: list[Path]) -> str:
    """A reprepro repository (made if need be) with ``debs`` in it; its apt line."""
    conf = repo / "conf"
    if not conf.is_dir():
        conf.mkdir(parents=True)
        (conf / "distributions").write_text("Codename: pp\nSuite: pp\nComponents: main\nArchitectures: amd64\n")
    for deb in debs:
        subprocess.run(["reprepro", "-b", str(repo), "includedeb", "pp", str(deb)], check=True, capture_output=True)
    return f"deb [trusted=yes] file://{repo} pp main"


# Asks on the terminal and waits for the answer, as a careless postinst does.
ASKING_POSTINST = DebSpec("pp-askpostinst", scripts={
    "postinst": 'if [ "$1" = configure ]; then printf "Really configure pp-askpostinst? [y/N] "; read answer; fi'})
