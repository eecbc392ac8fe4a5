"""``edgestill gate`` through the CLI: real benchmarks stored, gated by git ref and A/B, and bad input → exit 2."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))
from gate_models import write_dense_chain  # noqa: E402


def edgestill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One model name, two builds: 20 dense layers on main, 40 on the pull request (twice the work)."""
    root = tmp_path_factory.mktemp("chains")
    return {"main": write_dense_chain(root / "main", "model", 20), "pr": write_dense_chain(root / "pr", "model", 40)}


def test_a_pull_request_that_doubles_the_work_fails_against_main(tmp_path: Path, chains: dict[str, Path]) -> None:
    db = tmp_path / "results.db"
    for ref in ("main", "pr"):
        r = edgestill("bench", str(chains[ref]), "--min-runs", "50", "--min-seconds", "0.3", "--db", str(db),
                      env={"EDGESTILL_GIT_REF": ref})  # fmt: skip
        assert r.returncode == 0, r.stderr
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    r = edgestill("gate", "--baseline", "main", "--candidate", "latest", "--db", str(db), "--junit", str(junit),
                  "--md", str(md), "--max-size-growth", "200")  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "regression" in r.stdout and "gate FAILED" in r.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    assert "edgestill gate: FAILED" in md.read_text()


def test_bench_json_files_gate_each_other(tmp_path: Path, chains: dict[str, Path]) -> None:
    docs = {}
    for ref in ("main", "pr"):
        r = edgestill("bench", str(chains[ref]), "--min-runs", "50", "--min-seconds", "0.3", "--db", str(tmp_path / "r.db"),
                      "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        docs[ref] = tmp_path / f"{ref}.json"
        docs[ref].write_text(r.stdout)
        assert json.loads(r.stdout)["schema_version"] == 1 and json.loads(r.stdout)["measurements"][0]["samples_ms"]
    r = edgestill("gate", "--baseline", str(docs["pr"]), "--candidate", str(docs["main"]), "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0, r.stderr  # the candidate is the faster one: an improvement, and a smaller file
    assert out["cells"][0]["verdict"] == "improvement" and out["counts"]["improvement"] == 1


def test_ab_mode_times_both_interleaved_and_calls_the_slowdown(chains: dict[str, Path]) -> None:
    r = edgestill("gate", "--ab", str(chains["main"]), str(chains["pr"]), "--blocks", "12", "--max-size-growth", "200", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 1, r.stderr
    (cell,) = out["cells"]
    assert out["mode"] == "ab" and cell["verdict"] == "regression" and cell["latency"]["test"] == "wilcoxon-paired"
    assert cell["latency"]["ratio"] > 1.5 and cell["baseline"]["blocks"] == 12  # 2x the layers; more once weights leave the cache


def test_gate_bad_inputs_exit_2_with_a_message(tmp_path: Path, chains: dict[str, Path]) -> None:
    """Bad inputs tried: no cell in common, a corrupt SQLite file, a foreign SQLite file, a JSON of another schema
    version, an unknown run reference, a missing store, no --baseline, a --junit folder that does not exist, an --ab
    path that is not an artifact."""
    db = tmp_path / "r.db"
    other = write_dense_chain(tmp_path / "other", "other", 2)
    for manifest, ref in ((chains["main"], "main"), (other, "other")):
        r = edgestill("bench", str(manifest), "--min-runs", "10", "--min-seconds", "0.05", "--db", str(db),
                      env={"EDGESTILL_GIT_REF": ref})  # fmt: skip
        assert r.returncode == 0, r.stderr
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema": "edgestill.results", "schema_version": 7, "measurements": []}))
    cases = [
        (("--baseline", "main", "--candidate", "other", "--db", str(db)), "no cell in common"),
        (("--baseline", str(corrupt), "--candidate", "latest", "--db", str(db)), "not an edgestill results store"),
        (("--baseline", str(foreign), "--candidate", "latest", "--db", str(db)), "tables users"),
        (("--baseline", str(wrong), "--candidate", "latest", "--db", str(db)), "version 7"),
        (("--baseline", "release-9", "--db", str(db)), "no run in"),
        (("--baseline", "main", "--db", str(tmp_path / "missing.db")), "does not exist"),
        (("--candidate", "latest", "--db", str(db)), "name a --baseline"),
        (("--baseline", "main", "--db", str(db), "--junit", str(tmp_path / "no" / "g.xml")), "does not exist"),
        (("--ab", str(wrong), str(chains["main"])), "manifest"),
    ]
    for args, message in cases:
        r = edgestill("gate", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "missing.db").exists()
