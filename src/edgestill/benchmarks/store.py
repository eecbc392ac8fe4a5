"""The results store: SQLite with runs, measurements (every record field + provenance) and raw samples.

Every write is one transaction: a crash part-way through leaves no half-written run or measurement.
The schema is versioned with ``PRAGMA user_version``; a newer store than this code knows is refused.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgestill.record import Measurement, measurement_from_dict
from edgestill.errors import InputError

SCHEMA_VERSION = 3
DEFAULT_PATH = Path(".edgestill") / "results.db"

_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,
    git_commit TEXT,
    git_dirty INTEGER,
    package_version TEXT,
    command TEXT NOT NULL,
    label TEXT,
    recipe_sha256 TEXT,
    machine TEXT
);
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    artifact TEXT NOT NULL,
    format TEXT NOT NULL,
    precision TEXT NOT NULL,
    runtime TEXT NOT NULL,
    threads INTEGER NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT,
    init_ms REAL, first_ms REAL, warmup_ms_mean REAL,
    p50_ms REAL, p90_ms REAL, p99_ms REAL, mean_ms REAL, std_ms REAL, cv_percent REAL,
    min_ms REAL, max_ms REAL, n INTEGER,
    low_ms REAL, high_ms REAL,
    peak_rss_mb REAL, model_bytes INTEGER,
    accuracy_metric TEXT, accuracy_value REAL, accuracy_n INTEGER,
    parity_json TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    settings_json TEXT NOT NULL,
    warnings_json TEXT NOT NULL,
    error TEXT,
    clock TEXT,
    wall_latency_json TEXT,
    teacher_top1_agreement REAL,
    teacher_kl REAL
);
CREATE INDEX measurements_run ON measurements(run_id);
CREATE INDEX measurements_artifact ON measurements(artifact);
CREATE TABLE samples (
    measurement_id INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    value_ms REAL NOT NULL,
    PRIMARY KEY (measurement_id, idx)
) WITHOUT ROWID;
"""

_LATENCY = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv_percent", "min_ms", "max_ms", "n")
_PLAIN = ("artifact", "format", "precision", "runtime", "threads", "kind", "init_ms", "first_ms", "warmup_ms_mean",
          "low_ms", "high_ms", "peak_rss_mb", "model_bytes", "error", "clock", "teacher_top1_agreement",
          "teacher_kl")  # fmt: skip
# schema 1 → 2: the clock a latency was read from, and the wall-clock summary when it was the runtime's own
# schema 2 → 3: the recipe and machine of a run; each artifact's agreement with its teacher
_MIGRATIONS = {1: ("ALTER TABLE measurements ADD COLUMN clock TEXT", "ALTER TABLE measurements ADD COLUMN wall_latency_json TEXT"),
               2: ("ALTER TABLE runs ADD COLUMN recipe_sha256 TEXT", "ALTER TABLE runs ADD COLUMN machine TEXT",
                   "ALTER TABLE measurements ADD COLUMN teacher_top1_agreement REAL",
                   "ALTER TABLE measurements ADD COLUMN teacher_kl REAL")}


class ResultsStore:
    """A SQLite file of runs and their measurements. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)  # transactions are explicit
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path} is not an edgestill results store ({exc}); pass a new path or the right file.") from None
        if version == 0:
            with self._transaction() as db:
                if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise InputError(f"{self.path} is a SQLite file with other tables; use a new path for the results store.")
                # one statement at a time: executescript() would commit and end the transaction
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(stmt)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version < SCHEMA_VERSION:
            with self._transaction() as db:  # in place and in one transaction: old rows read as wall clock
                for step in range(version, SCHEMA_VERSION):
                    for stmt in _MIGRATIONS[step]:
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            self._db.close()
            raise InputError(
                f"{self.path} has results-store schema {version}, newer than this edgestill's {SCHEMA_VERSION}; "
                "upgrade edgestill to read it."
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writes ---------------------------------------------------------------------------------------

    def add_run(
        self,
        command: str,
        *,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        package_version: str | None = None,
        label: str | None = None,
        recipe_sha256: str | None = None,
        machine: str | None = None,
        measurements: Iterable[Measurement] = (),
    ) -> int:
        """Record a run (and, optionally, its measurements) in ONE transaction; return the run id.

        ``git_commit``/``git_dirty``/``package_version`` default to this checkout's, ``machine`` to this host's
        device id (see ``host_provenance``). ``recipe_sha256`` is the hash of the recipe a chain run followed.
        """
        if git_commit is None:
            from edgestill.host import git_state

            git_commit, found_dirty = git_state()
            git_dirty = found_dirty if git_dirty is None else git_dirty
        if package_version is None:
            from edgestill import __version__ as package_version
        if machine is None:
            from edgestill.host import host_provenance

            machine = host_provenance().get("device_id")
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (created_at, git_commit, git_dirty, package_version, command, label, recipe_sha256, "
                "machine) VALUES (?,?,?,?,?,?,?,?)",
                (created, git_commit, None if git_dirty is None else int(git_dirty), package_version, command, label,
                 recipe_sha256, machine),
            )
            run_id = int(cur.lastrowid)
            for m in measurements:
                self._insert(db, run_id, m)
        return run_id

    def add_measurement(self, run_id: int, m: Measurement) -> int:
        """Add one measurement and its raw samples to a run (one transaction); return its id.

        Raises:
            InputError: no run with that id.
        """
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise InputError(f"no run {run_id} in {self.path}; create one with add_run first.")
            return self._insert(db, run_id, m)

    def _insert(self, db: sqlite3.Connection, run_id: int, m: Measurement) -> int:
        lat = m.latency
        row: dict[str, Any] = {k: getattr(m, k) for k in _PLAIN}
        row.update({k: getattr(lat, k) if lat else None for k in _LATENCY})
        row.update(
            run_id=run_id,
            device_id=m.provenance.get("device_id"),
            accuracy_metric=m.accuracy.metric if m.accuracy else None,
            accuracy_value=m.accuracy.value if m.accuracy else None,
            accuracy_n=m.accuracy.n if m.accuracy else None,
            parity_json=json.dumps([p.__dict__ for p in m.parity]),
            provenance_json=json.dumps(m.provenance),
            settings_json=json.dumps(m.settings),
            warnings_json=json.dumps(m.warnings),
            wall_latency_json=json.dumps(m.wall_latency.__dict__) if m.wall_latency else None,
        )
        cols = ", ".join(row)
        cur = db.execute(f"INSERT INTO measurements ({cols}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
        mid = int(cur.lastrowid)
        db.executemany(
            "INSERT INTO samples (measurement_id, idx, value_ms) VALUES (?,?,?)",
            ((mid, i, float(v)) for i, v in enumerate(m.samples_ms)),
        )
        return mid

    # -- reads ----------------------------------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first."""
        rows = self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()
        return [{**dict(r), "git_dirty": None if r["git_dirty"] is None else bool(r["git_dirty"])} for r in rows]

    def measurements(self, run_id: int | None = None, artifact: str | None = None) -> list[dict[str, Any]]:
        """Measurements as flat dicts (``Measurement.to_dict`` keys plus ``id`` and ``run_id``), oldest first."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if artifact is not None:
            where.append("artifact = ?")
            args.append(artifact)
        sql = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [_to_dict(r) for r in self._db.execute(sql, args).fetchall()]

    def measurement(self, measurement_id: int, with_samples: bool = True) -> Measurement:
        """One stored measurement as a record, with its raw samples.

        Raises:
            InputError: no measurement with that id.
        """
        r = self._db.execute("SELECT * FROM measurements WHERE id = ?", (measurement_id,)).fetchone()
        if r is None:
            raise InputError(f"no measurement {measurement_id} in {self.path}.")
        d = _to_dict(r)
        if with_samples:
            d["samples_ms"] = self.samples(measurement_id)
        return measurement_from_dict(d)

    def samples(self, measurement_id: int) -> list[float]:
        """The raw steady-state samples (ms) of a measurement, in the order they were taken."""
        rows = self._db.execute("SELECT value_ms FROM samples WHERE measurement_id = ? ORDER BY idx", (measurement_id,))
        return [r[0] for r in rows]


def _to_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["parity"] = json.loads(d.pop("parity_json"))
    d["provenance"] = json.loads(d.pop("provenance_json"))
    d["settings"] = json.loads(d.pop("settings_json"))
    d["warnings"] = json.loads(d.pop("warnings_json"))
    wall = d.pop("wall_latency_json")
    d["wall_latency"] = json.loads(wall) if wall else None
    d["clock"] = d["clock"] or "wall"
    metric, value, n = d.pop("accuracy_metric"), d.pop("accuracy_value"), d.pop("accuracy_n")
    d["accuracy"] = {"metric": metric, "value": value, "n": n} if metric is not None else None
    return d
