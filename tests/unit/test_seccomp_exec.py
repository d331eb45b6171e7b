"""The seccomp launcher every command inside starts with (no root needed:
libseccomp sets no_new_privs, which lets anyone load a filter)."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from piuparts.backends.overlay import SECCOMP_EXEC, SYSTEM_PYTHON

LAUNCH = [SYSTEM_PYTHON, "-I", "-S", str(SECCOMP_EXEC)]
HAVE_BINDINGS = Path("/usr/lib/python3/dist-packages").glob("seccomp*.so")
needs_bindings = pytest.mark.skipif(not list(HAVE_BINDINGS), reason="python3-seccomp is not installed")


def launcher():
    spec = importlib.util.spec_from_file_location("seccomp_exec", SECCOMP_EXEC)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_bindings_say_what_to_install(monkeypatch, capsys):
    module = launcher()

    def missing():
        raise ImportError("No module named 'seccomp'")
    monkeypatch.setattr(module, "_seccomp", missing)
    assert module.main(["--check"]) == 2
    assert capsys.readouterr().err.strip() == "piuparts: python3-seccomp is missing (apt-get install python3-seccomp)"


@needs_bindings
def test_the_filter_refuses_namespaces_and_ptrace_and_lets_the_rest_run(tmp_path):
    script = ("unshare -m true 2>&1; echo \"unshare: $?\"; "
              "perl -e 'printf \"ptrace: %d %s\\n\", syscall(101, 0, 0, 0, 0), $!'; "
              "echo made > " + str(tmp_path / "written") + "; grep NoNewPrivs /proc/self/status")
    result = subprocess.run([*LAUNCH, "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "unshare: unshare failed: Operation not permitted", "unshare: 1",
        "ptrace: -1 Operation not permitted", "NoNewPrivs:\t1"]
    assert (tmp_path / "written").read_text() == "made\n"


@needs_bindings
def test_a_command_that_is_not_there_is_one_line():
    result = subprocess.run([*LAUNCH, "pp-no-such-command"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr.strip()) == (127, "piuparts: cannot run pp-no-such-command: "
                                                                "No such file or directory")
