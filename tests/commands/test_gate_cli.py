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

from edgestill.benchmarks.store import ResultsStore

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


def test_a_slower_pull_request_fails_against_main_in_the_store(tmp_path: Path) -> None:
    """Runs stored under git refs (records with raw samples as bench writes them; their noise is set here so the
    verdict does not depend on this machine's mood): the candidate is 30% slower → exit 1, JUnit and Markdown."""
    from tests.benchmarks.test_gate import _record

    db = tmp_path / "results.db"
    with ResultsStore(db) as store:
        store.add_run("bench", git_commit="aa" * 20, git_ref="main", measurements=[_record("model"), _record("other")])
        store.add_run("bench", git_commit="bb" * 20, git_ref="pr-7", measurements=[_record("model", median=1.3, seed=4)])
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    r = edgestill("gate", "--baseline", "main", "--candidate", "latest", "--db", str(db), "--junit", str(junit),
                  "--md", str(md))  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "regression" in r.stdout and "% slower" in r.stdout and "gate FAILED" in r.stdout
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "1"
    text = md.read_text()
    assert "edgestill gate: FAILED" in text and "only in the baseline" in text and "other" in text
    r = edgestill("gate", "--baseline", "main", "--candidate", "main", "--db", str(db), "--json")  # main against itself
    assert r.returncode == 0 and json.loads(r.stdout)["counts"]["no change"] == 2


def test_real_bench_runs_gate_each_other_through_their_json_files(tmp_path: Path, chains: dict[str, Path]) -> None:
    """Two real `bench --json` documents (20 and 40 layers under one name). Between separate runs this machine may
    drift or a window may be flagged unstable, so the faster candidate is an improvement or, when the noise says so,
    no verdict with its reason — never a regression, and the job passes either way."""
    docs = {}
    for ref in ("main", "pr"):
        r = edgestill("bench", str(chains[ref]), "--min-runs", "50", "--min-seconds", "0.3", "--db", str(tmp_path / "r.db"),
                      "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr
        docs[ref] = tmp_path / f"{ref}.json"
        docs[ref].write_text(r.stdout)
        assert json.loads(r.stdout)["schema_version"] == 1 and json.loads(r.stdout)["measurements"][0]["samples_ms"]
    r = edgestill("gate", "--baseline", str(docs["pr"]), "--candidate", str(docs["main"]), "--json")
    assert r.returncode == 0, r.stderr
    (cell,) = json.loads(r.stdout)["cells"]
    assert cell["verdict"] in ("improvement", "no verdict"), cell
    if cell["verdict"] == "no verdict":
        assert "unstable" in cell["reason"] or "CV" in cell["reason"] or "resolve" in cell["reason"], cell["reason"]
    else:
        assert cell["latency"]["ratio"] < 0.75 and cell["latency"]["test"] == "mann-whitney-u"


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
