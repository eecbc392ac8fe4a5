"""No secrets in logs, reports or the store: credentials in the environment, in a git remote, in $EDGESTILL_GIT_REF or
in a manifest's source URL never reach the results store, ``--json`` output, the console or a log file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from edgestill.host import REDACTED, git_ref, redact, redact_all
from tests.benchmarks.conftest import write_tiny_onnx

REPO = Path(__file__).resolve().parents[1]

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3xAMPLEKEY",
    "AWS_ACCESS_KEY_ID": "AKIAZ7TESTKEY4EXAMPL",
    "GITHUB_TOKEN": "ghp_T0kenT0kenT0kenT0kenT0kenT0kenAb12",
    "HF_TOKEN": "hf_qWeRtY123456uIoPaSdFgHjKl7890zXcV",
    "MY_SERVICE_API_KEY": "not-shaped-like-a-token-but-secret-7731",  # only safe because env is never dumped
}
REMOTE_PASSWORD = "s3cretRemotePassw0rd"
SOURCE_PASSWORD = "hunter2SourcePassw0rd"
REF_TOKEN = "ghp_RefT0kenRefT0kenRefT0kenRefT0ken9Z"


@pytest.mark.parametrize(("text", "expected"), [
    ("https://bob:pw@hub.example.com/m", "https://hub.example.com/m"),
    ("clone git+ssh://deploy:tok@git.example.com/x.git now", "clone git+ssh://git.example.com/x.git now"),
    (SECRETS["GITHUB_TOKEN"], REDACTED),
    (f"Authorization failed for {SECRETS['HF_TOKEN']}.", f"Authorization failed for {REDACTED}."),
    (SECRETS["AWS_ACCESS_KEY_ID"], REDACTED),
    ("key=Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MGFiY2RlZg==", f"key={REDACTED}"),
])
def test_redact_removes_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # a sha256: hex is never a token
    "/home/User/Projects/MyModels2/checkpoints2024/student-onnx-int8-static.manifest.json",
    "feature/Add-Login-Page2-and-more", "refs/pull/12/merge", "v1.2.3", "git@github.com:org/repo.git",
    "CPUExecutionProvider", "INFERENCE_PRECISION_HINT",
])
def test_redact_leaves_ordinary_values_alone(text: str) -> None:
    assert redact(text) == text
    assert redact_all({"a": [text, {"b": text}], "n": 3}) == {"a": [text, {"b": text}], "n": 3}


@pytest.mark.parametrize("value", [REF_TOKEN, SECRETS["AWS_SECRET_ACCESS_KEY"], f"https://x:{REF_TOKEN}@h/r"])
def test_a_token_in_the_git_ref_variable_is_not_used_as_the_ref(value: str, monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    monkeypatch.setenv("EDGESTILL_GIT_REF", value)
    ref = git_ref(cwd=tmp_path)  # not a repo: no branch to fall back on
    assert ref == REDACTED or (ref is not None and REF_TOKEN not in ref and "wJalr" not in ref)
    monkeypatch.setenv("EDGESTILL_GIT_REF", "release/2026.12")
    assert git_ref(cwd=tmp_path) == "release/2026.12"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=30)


def test_bench_stores_and_prints_no_secret(tmp_path: Path) -> None:
    """Bad input tried: secrets in five environment variables, a git remote with user:password, a GitHub token as
    $EDGESTILL_GIT_REF, and a manifest whose source URL carries user:password. None of them may appear in the store's
    bytes (database and journal), the --json document, the table, stderr or any log file."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init")
    _git(repo, "remote", "add", "origin", f"https://alice:{REMOTE_PASSWORD}@git.example.com/org/repo.git")
    manifest = write_tiny_onnx(repo / "art")
    d = json.loads(manifest.read_text())
    d["source"] = {"model": f"https://bob:{SOURCE_PASSWORD}@hub.example.com/org/model", "note": SECRETS["HF_TOKEN"]}
    manifest.write_text(json.dumps(d))
    env = {**os.environ, **SECRETS, "EDGESTILL_GIT_REF": REF_TOKEN, "PYTHONPATH": str(REPO)}
    db = repo / "results.db"
    outputs = []
    for extra in (("--json",), ()):
        r = subprocess.run([sys.executable, "-m", "edgestill", "bench", str(manifest), "--min-runs", "5",
                            "--min-seconds", "0", "--db", str(db), *extra],
                           capture_output=True, text=True, timeout=300, cwd=repo, env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
        outputs += [r.stdout, r.stderr]
    doc = json.loads(outputs[0])
    assert doc["measurements"][0]["kind"] == "measured"
    with sqlite3.connect(db) as con:
        refs = [row[0] for row in con.execute("SELECT git_ref FROM runs")]
        stored_manifest = con.execute("SELECT manifest_json FROM artifacts").fetchone()[0]
    assert refs == ["main", "main"]  # the token was refused; the checkout's branch stands in
    assert "https://hub.example.com/org/model" in stored_manifest  # the URL is kept, its user:password is not
    stored = b"".join(p.read_bytes() for p in repo.rglob("*") if p.is_file() and (p.suffix in (".db", ".log")
                      or p.name.startswith("results.db") or ".edgestill" in p.parts))  # fmt: skip
    assert stored
    for secret in [*SECRETS.values(), REMOTE_PASSWORD, SOURCE_PASSWORD, REF_TOKEN]:
        assert secret.encode() not in stored, secret
        for text in outputs:
            assert secret not in text, (secret, text)
