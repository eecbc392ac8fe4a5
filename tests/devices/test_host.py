"""Host provenance: complete, hostname-free, git-aware, torch-free."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.host import host_provenance

KEYS = {"device_id", "cpu_model", "cpu_flags", "cpu_count", "usable_cores", "arch", "os", "kernel", "mem_total_mb",
        "python", "package_version", "git_commit", "git_dirty", "time_utc"}  # fmt: skip


def test_fields_are_present_and_hostname_free() -> None:
    info = host_provenance()
    assert KEYS <= set(info)
    assert info["cpu_count"] == os.cpu_count() and info["python"] == platform.python_version()
    assert len(info["device_id"]) == 16 and info["device_id"] == host_provenance()["device_id"]
    assert socket.gethostname() not in json.dumps(info)
    assert info["time_utc"].endswith("+00:00")


def test_git_commit_and_dirty_flag_of_a_repo(tmp_path: Path) -> None:
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    clean = host_provenance(tmp_path)
    assert (clean["git_commit"], clean["git_dirty"]) == (head, False)
    (tmp_path / "f").write_text("2")
    assert host_provenance(tmp_path)["git_dirty"] is True


def test_outside_a_repo_git_fields_are_none(tmp_path: Path) -> None:
    info = host_provenance(tmp_path)
    if info["git_commit"] is not None:
        pytest.skip("tmp_path lies inside a git repository on this machine")
    assert info["git_dirty"] is None


def test_import_is_torch_free() -> None:
    code = "import sys, edgestill.host as h; h.host_provenance(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
