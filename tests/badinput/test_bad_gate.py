"""Bad input to the commands that read the results store: ``gate``, ``history`` and ``report``.

Each case names the bad input; each must exit 2 with one paragraph and no traceback, and write no output file.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.badinput.conftest import assert_bad_input, edgestill


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid store with two runs of one cell (no runtime needed)."""
    from edgestill.benchmarks.store import ResultsStore
    from tests.benchmarks.test_store import _measurement

    path = tmp_path_factory.mktemp("store") / "results.db"
    with ResultsStore(path) as s:
        s.add_run("bench base", label="base", measurements=[_measurement("m")])
        s.add_run("bench pr", label="pr", measurements=[_measurement("m")])
    return path


def _paths(tmp_path: Path, store: Path, case: str) -> list[str]:
    """The command line of one bad-input case; files it needs are made under ``tmp_path``."""
    if case == "gate: --db does not exist":
        return ["gate", "--baseline", "1", "--db", str(tmp_path / "none.db")]
    if case == "gate: --db is a folder":
        return ["gate", "--baseline", "1", "--db", str(tmp_path)]
    if case == "gate: --db is a text file":
        (tmp_path / "notes.db").write_text("not sqlite\n" * 100)
        return ["gate", "--baseline", "1", "--db", str(tmp_path / "notes.db")]
    if case == "gate: --db is another program's SQLite file":
        with closing(sqlite3.connect(tmp_path / "other.db")) as con, con:
            con.execute("CREATE TABLE users (name TEXT)")
        return ["gate", "--baseline", "1", "--db", str(tmp_path / "other.db")]
    if case == "gate: --db has a newer schema":
        newer = tmp_path / "newer.db"
        newer.write_bytes(store.read_bytes())
        # closed here, not at garbage collection: an open connection keeps the
        # WAL side files (-wal, -shm) that the command would then remove.
        with closing(sqlite3.connect(newer)) as con, con:
            con.execute("PRAGMA user_version = 99")
        return ["gate", "--baseline", "1", "--db", str(newer)]
    if case == "gate: --baseline names no run":
        return ["gate", "--baseline", "no-such-branch", "--db", str(store)]
    if case == "gate: --baseline file is not JSON":
        (tmp_path / "base.json").write_text("{not json")
        return ["gate", "--baseline", str(tmp_path / "base.json"), "--candidate", "2", "--db", str(store)]
    if case == "gate: --baseline JSON is a list":
        (tmp_path / "base.json").write_text("[1, 2, 3]")
        return ["gate", "--baseline", str(tmp_path / "base.json"), "--candidate", "2", "--db", str(store)]
    if case == "gate: --min-effect nan":
        return ["gate", "--baseline", "1", "--candidate", "2", "--db", str(store), "--min-effect", "nan"]
    if case == "gate: --max-accuracy-drop negative":
        return ["gate", "--baseline", "1", "--candidate", "2", "--db", str(store), "--max-accuracy-drop", "-1"]
    if case == "gate: --max-size-growth inf":
        return ["gate", "--baseline", "1", "--candidate", "2", "--db", str(store), "--max-size-growth", "inf"]
    if case == "gate: --max-cv 0":
        return ["gate", "--baseline", "1", "--candidate", "2", "--db", str(store), "--max-cv", "0"]
    if case == "gate: --ab manifest does not exist":
        return ["gate", "--ab", str(tmp_path / "old.manifest.json"), str(tmp_path / "new.manifest.json")]
    if case == "gate: --junit parent is a file":
        (tmp_path / "file").write_text("x")
        return ["gate", "--baseline", "1", "--candidate", "2", "--db", str(store), "--junit", str(tmp_path / "file" / "g.xml")]
    if case == "history: --db does not exist":
        return ["history", "--model", "m", "--db", str(tmp_path / "none.db")]
    if case == "history: unknown --metric":
        return ["history", "--model", "m", "--metric", "p42_ms", "--db", str(store)]
    if case == "report: run does not exist":
        return ["report", "77", "--db", str(store), "--html", str(tmp_path / "r.html")]
    if case == "report: --html folder does not exist":
        return ["report", "latest", "--db", str(store), "--html", str(tmp_path / "missing" / "r.html")]
    raise AssertionError(case)


CASES = {
    "gate: --db does not exist": ("none.db", "does not exist"),
    "gate: --db is a folder": ("not a file",),
    "gate: --db is a text file": ("not an edgestill results store",),
    "gate: --db is another program's SQLite file": ("not an edgestill results store",),
    "gate: --db has a newer schema": ("newer",),
    "gate: --baseline names no run": ("no-such-branch",),
    "gate: --baseline file is not JSON": ("base.json",),
    "gate: --baseline JSON is a list": ("base.json",),
    "gate: --min-effect nan": ("--min-effect",),
    "gate: --max-accuracy-drop negative": ("--max-accuracy-drop",),
    "gate: --max-size-growth inf": ("--max-size-growth",),
    "gate: --max-cv 0": ("--max-cv",),
    "gate: --ab manifest does not exist": ("old.manifest.json",),
    "gate: --junit parent is a file": ("--junit",),
    "history: --db does not exist": ("no results store",),
    "history: unknown --metric": ("p42_ms",),
    "report: run does not exist": ("77",),
    "report: --html folder does not exist": ("--html",),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_to_the_store_readers_exits_2_and_writes_nothing(tmp_path: Path, store: Path, case: str) -> None:
    before = store.read_bytes()
    args = _paths(tmp_path, store, case)
    made_before = sorted(p.name for p in tmp_path.iterdir())
    r = edgestill(*args)
    assert_bad_input(r, *CASES[case])
    assert store.read_bytes() == before  # a reader never changes the store
    assert sorted(p.name for p in tmp_path.iterdir()) == made_before  # no report, JUnit or store file was created
    assert not r.stdout.strip() or json.loads(r.stdout) is None  # nothing half-printed on stdout
