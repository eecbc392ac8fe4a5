"""The results store: SQLite with runs, artifacts (their manifests), measurements (every record field + provenance)
with their raw samples, and estimates, kept in a table of their own so that no read of measurements returns one.

Every write is one transaction: a crash part-way through leaves no half-written run or measurement.
The schema is versioned with ``PRAGMA user_version`` and migrated in place; a newer store than this code knows is
refused. The file is in write-ahead-log mode and every connection waits (and retries) while another process writes,
so many ``bench`` processes can share one store: every row lands.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgestill.record import Measurement, measurement_from_dict
from edgestill.errors import EdgestillError, InputError, RuntimeFailure

SCHEMA_VERSION = 7
BUSY_TIMEOUT_S = 30.0  # how long one statement waits for another writer's lock before the retry loop takes over
BUSY_RETRIES = 8  # retries of a whole transaction that still found the store locked (backoff 0.05 s doubling)
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
    machine TEXT,
    git_ref TEXT,
    run_key TEXT
);
CREATE UNIQUE INDEX runs_key ON runs(run_key);
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
    teacher_kl REAL,
    stability_json TEXT,
    teacher_cosine REAL,
    teacher_retrieval_agreement REAL,
    retrieval_k INTEGER,
    ttft_ms REAL,
    prefill_tokens_per_s REAL,
    decode_tokens_per_s REAL,
    prompt_tokens INTEGER,
    generated_tokens INTEGER
);
CREATE INDEX measurements_run ON measurements(run_id);
CREATE INDEX measurements_artifact ON measurements(artifact);
CREATE TABLE artifacts (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    format TEXT,
    precision TEXT,
    manifest_json TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE estimates (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    artifact TEXT NOT NULL,
    format TEXT NOT NULL,
    precision TEXT NOT NULL,
    runtime TEXT NOT NULL,
    threads INTEGER NOT NULL,
    device_id TEXT,
    estimate_ms REAL,
    low_ms REAL,
    high_ms REAL,
    model_bytes INTEGER,
    record_json TEXT NOT NULL
);
CREATE INDEX estimates_run ON estimates(run_id);
CREATE TABLE samples (
    measurement_id INTEGER NOT NULL REFERENCES measurements(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    value_ms REAL NOT NULL,
    PRIMARY KEY (measurement_id, idx)
) WITHOUT ROWID;
"""



def _statement(prefix: str) -> str:
    """The statement of ``_SCHEMA`` that starts with ``prefix``: a migration creates a table exactly as a new store has it."""
    return next(stmt.strip() for stmt in _SCHEMA.split(";") if stmt.strip().startswith(prefix))


# a generative model's timing at fixed lengths (None for other models); its latency columns are per decoded token
_GENERATIVE = ("ttft_ms", "prefill_tokens_per_s", "decode_tokens_per_s", "prompt_tokens", "generated_tokens")
_LATENCY = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "cv_percent", "min_ms", "max_ms", "n")
_PLAIN = ("artifact", "format", "precision", "runtime", "threads", "kind", "init_ms", "first_ms", "warmup_ms_mean",
          "low_ms", "high_ms", "peak_rss_mb", "model_bytes", "error", "clock", "teacher_top1_agreement",
          "teacher_kl", "teacher_cosine", "teacher_retrieval_agreement", "retrieval_k", *_GENERATIVE)  # fmt: skip
# schema 1 → 2: the clock a latency was read from, and the wall-clock summary when it was the runtime's own
# schema 2 → 3: the recipe and machine of a run; each artifact's agreement with its teacher
_MIGRATIONS = {1: ("ALTER TABLE measurements ADD COLUMN clock TEXT", "ALTER TABLE measurements ADD COLUMN wall_latency_json TEXT"),
               2: ("ALTER TABLE runs ADD COLUMN recipe_sha256 TEXT", "ALTER TABLE runs ADD COLUMN machine TEXT",
                   "ALTER TABLE measurements ADD COLUMN teacher_top1_agreement REAL",
                   "ALTER TABLE measurements ADD COLUMN teacher_kl REAL"),
               # schema 3 → 4: a run's git ref (branch or tag), each cell's stability verdict, artifacts' manifests,
               # and estimates apart from measurements
               3: ("ALTER TABLE runs ADD COLUMN git_ref TEXT", "ALTER TABLE measurements ADD COLUMN stability_json TEXT",
                   *(_statement(p) for p in ("CREATE TABLE artifacts", "CREATE TABLE estimates", "CREATE INDEX estimates_run"))),
               # schema 4 → 5: a caller's key for a run, so a command killed after storing and rerun finds its run
               4: ("ALTER TABLE runs ADD COLUMN run_key TEXT", _statement("CREATE UNIQUE INDEX runs_key")),
               # schema 5 → 6: an embedder's agreement with its teacher (mean cosine, top-k retrieval agreement)
               5: ("ALTER TABLE measurements ADD COLUMN teacher_cosine REAL",
                   "ALTER TABLE measurements ADD COLUMN teacher_retrieval_agreement REAL",
                   "ALTER TABLE measurements ADD COLUMN retrieval_k INTEGER"),
               # schema 6 → 7: a generative model's time to first token, prefill and decode tokens/s, and the lengths
               6: tuple(f"ALTER TABLE measurements ADD COLUMN {c} {'INTEGER' if c.endswith('_tokens') else 'REAL'}"
                        for c in _GENERATIVE)}


def _store_error(path: Path, exc: sqlite3.DatabaseError) -> EdgestillError:
    """What a SQLite failure on opening ``path`` means for the user: a file that is not a store, a place no store can
    be written (a folder that cannot be written, a dangling link, a read-only file), or a store other writers hold."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return RuntimeFailure(f"the results store {path} stayed locked by other writers past {BUSY_RETRIES} retries "
                              f"of {BUSY_TIMEOUT_S:g} s ({text}); retry when they are done, or pass another --db.")
    if any(m in text for m in ("unable to open", "readonly", "read-only")):
        where = f"{path} (a link to {os.readlink(path)})" if path.is_symlink() else str(path)
        return InputError(f"cannot open or write the results store {where} ({text}): the file must be writable and its "
                          "folder an existing, writable folder (a link must point at one). Pass another --db, e.g. "
                          f"{DEFAULT_PATH}.")
    return InputError(f"{path} is not an edgestill results store ({text}); pass a new path or the right file.")


class ResultsStore:
    """A SQLite file of runs and their measurements. Use as a context manager or call ``close()``."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH):
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"--db {self.path} is a folder; pass a file path for the results store (e.g. {DEFAULT_PATH}).")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise InputError(f"cannot create the results store {self.path}: a part of its folder path is a file. "
                             "Pass a path whose parent is a folder.") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S)  # explicit transactions
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # the schema is read and written inside one write transaction: two processes creating a new store at once
            # cannot both see version 0 and both create it (the second waits and then finds version SCHEMA_VERSION)
            with self._transaction() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                        raise InputError(f"{self.path} is a SQLite file with other tables; use a new path for the results store.")
                    # one statement at a time: executescript() would commit and end the transaction
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version < SCHEMA_VERSION:  # in place and in one transaction: old rows read as wall clock
                    for step in range(version, SCHEMA_VERSION):
                        for stmt in _MIGRATIONS[step]:
                            db.execute(stmt)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                elif version > SCHEMA_VERSION:
                    raise InputError(
                        f"{self.path} has results-store schema {version}, newer than this edgestill's {SCHEMA_VERSION}; "
                        "upgrade edgestill to read it."
                    )
            self._db.execute("PRAGMA journal_mode = WAL")  # readers never block the writer; kept in the file
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise _store_error(self.path, exc) from None
        except BaseException:
            self._close_quietly()
            raise

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> ResultsStore:
        """Open an existing results store; never create one (opening a store for writing creates an empty file).

        Raises:
            InputError: no file at ``path``, a folder, or a file that is not an edgestill results store (corrupt, not
                SQLite, another program's database, an empty file).
        """
        p = Path(path)
        if not p.exists():
            raise InputError(f"no results store at {p}. Run `edgestill bench`, `edgestill run` or `edgestill demo` with "
                             "--db pointing there first, or pass --db with the path of an existing store.")  # fmt: skip
        if not p.is_file():
            raise InputError(f"the results store {p} is not a file; pass the path of the SQLite file "
                             "(e.g. .edgestill/results.db).")  # fmt: skip
        try:  # read-only, so that a file that is not a store is left exactly as it was
            con = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
            try:
                version = con.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{p} is not an edgestill results store ({exc}); pass the results store's path "
                             "with --db.") from None  # fmt: skip
        if version == 0 or not {"runs", "measurements"} <= tables:
            what = f"a SQLite file with tables {', '.join(sorted(tables))}" if tables else "an empty SQLite file"
            raise InputError(f"{p} is not an edgestill results store: it is {what}. Pass the results store's path with --db.")
        return cls(p)

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (the write lock up front, so a transaction never fails half-way on a lock), retried with
        backoff while another writer holds the store past the busy timeout."""
        delay = 0.05
        for attempt in range(BUSY_RETRIES + 1):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == BUSY_RETRIES:
                    raise
                time.sleep(delay)
                delay *= 2
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
        git_ref: str | None = None,
        run_key: str | None = None,
        measurements: Iterable[Measurement] = (),
    ) -> int:
        """Record a run (and, optionally, its measurements and estimates) in ONE transaction; return the run id.

        ``git_commit``/``git_dirty``/``package_version`` default to this checkout's, ``git_ref`` to ``$EDGESTILL_GIT_REF``,
        CI's branch (``$GITHUB_REF_NAME``) or the checkout's branch, ``machine`` to this host's device id (see
        ``host_provenance``). ``recipe_sha256`` is the hash of the recipe a chain run followed. A record of kind
        ``estimated`` goes to the estimates table, never among the measurements.

        ``run_key`` makes the call idempotent: when the store already holds a run with that key (a command killed after
        it stored, then rerun), that run's id is returned and nothing is added.
        """
        if git_ref is None:
            from edgestill.host import git_ref as _git_ref

            git_ref = _git_ref()  # a token pasted into $EDGESTILL_GIT_REF is never stored
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
            if run_key is not None:
                found = db.execute("SELECT id FROM runs WHERE run_key = ?", (run_key,)).fetchone()
                if found is not None:
                    return int(found[0])
            cur = db.execute(
                "INSERT INTO runs (created_at, git_commit, git_dirty, package_version, command, label, recipe_sha256, "
                "machine, git_ref, run_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (created, git_commit, None if git_dirty is None else int(git_dirty), package_version, command, label,
                 recipe_sha256, machine, git_ref, run_key),
            )
            run_id = int(cur.lastrowid)
            for m in measurements:
                self._insert(db, run_id, m)
        return run_id

    def run_by_key(self, run_key: str) -> int | None:
        """The id of the run stored with ``run_key`` (see :meth:`add_run`), or None."""
        found = self._db.execute("SELECT id FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return None if found is None else int(found[0])

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
        settings = dict(m.settings)
        manifest = settings.pop("manifest", None)
        if isinstance(manifest, dict):  # one row per artifact and run, however many cells measured it
            db.execute("INSERT OR REPLACE INTO artifacts (run_id, name, format, precision, manifest_json) VALUES (?,?,?,?,?)",
                       (run_id, m.artifact, m.format, m.precision, json.dumps(manifest)))
        if m.kind == "estimated":
            cur = db.execute(
                "INSERT INTO estimates (run_id, artifact, format, precision, runtime, threads, device_id, estimate_ms, "
                "low_ms, high_ms, model_bytes, record_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, m.artifact, m.format, m.precision, m.runtime, m.threads, m.provenance.get("device_id"),
                 m.latency.p50_ms if m.latency else None, m.low_ms, m.high_ms, m.model_bytes,
                 json.dumps({**m.to_dict(), "settings": settings})),
            )
            return int(cur.lastrowid)
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
            settings_json=json.dumps(settings),
            stability_json=json.dumps(m.stability) if m.stability is not None else None,
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

    def runs(self, run_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Every run (or those with the given ids), oldest first."""
        rows = self._db.execute("SELECT * FROM runs ORDER BY id").fetchall()
        wanted = None if run_ids is None else set(run_ids)
        return [{**dict(r), "git_dirty": None if r["git_dirty"] is None else bool(r["git_dirty"])}
                for r in rows if wanted is None or r["id"] in wanted]  # fmt: skip

    def resolve_runs(self, ref: str) -> list[int]:
        """The ids of the runs a reference names, oldest first.

        ``ref`` is ``latest`` (the newest run), a run id (``12`` or ``#12``), a label, a git ref recorded with the run
        (``main``, a tag), or a commit: a full or abbreviated hash, or a name that ``git rev-parse`` resolves in the
        current checkout (``HEAD~1``, ``origin/main``).

        Raises:
            InputError: no run matches; the message lists what the store holds.
        """
        runs = self.runs()
        ref = str(ref).strip()
        if runs and ref == "latest":
            return [runs[-1]["id"]]
        if ref.lstrip("#").isdigit():
            found = [r["id"] for r in runs if r["id"] == int(ref.lstrip("#"))]
            if found or ref.startswith("#"):
                return self._found(found, ref, runs)
        named = [r["id"] for r in runs if ref in (r["label"], r["git_ref"])]
        if named:
            return named
        commits = {ref} if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref.lower()) else set()
        resolved = _rev_parse(ref)
        if resolved:
            commits.add(resolved)
        found = [r["id"] for r in runs if r["git_commit"] and any(r["git_commit"].startswith(c.lower()) for c in commits)]
        return self._found(found, ref, runs)

    def _found(self, found: list[int], ref: str, runs: list[dict[str, Any]]) -> list[int]:
        if found:
            return found
        if not runs:
            raise InputError(f"no run matches {ref!r}: the results store {self.path} is empty. Run `edgestill bench` or "
                             "`edgestill run` with --db pointing at it first.")
        refs = sorted({str(r[k]) for r in runs for k in ("label", "git_ref") if r[k]})
        commits = sorted({r["git_commit"][:10] for r in runs if r["git_commit"]})
        raise InputError(
            f"no run in {self.path} matches {ref!r}. It holds runs {runs[0]['id']}..{runs[-1]['id']}"
            + (f", labels/refs {', '.join(refs[:10])}" if refs else "")
            + (f", commits {', '.join(commits[:10])}" if commits else "")
            + ". Name a run id, 'latest', a label, a git ref or a commit."
        )

    def artifacts(self, run_id: int) -> dict[str, dict[str, Any]]:
        """The manifests of the artifacts a run measured, by artifact name."""
        rows = self._db.execute("SELECT name, manifest_json FROM artifacts WHERE run_id = ? ORDER BY name", (run_id,))
        return {r["name"]: json.loads(r["manifest_json"]) for r in rows}

    def estimates(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Estimated records (``kind == "estimated"``) as flat dicts with ``id`` and ``run_id``, oldest first."""
        sql = "SELECT id, run_id, record_json FROM estimates" + (" WHERE run_id = ?" if run_id is not None else "") + " ORDER BY id"
        rows = self._db.execute(sql, () if run_id is None else (run_id,)).fetchall()
        return [{**json.loads(r["record_json"]), "id": r["id"], "run_id": r["run_id"]} for r in rows]

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


def _rev_parse(ref: str) -> str | None:
    """The commit a git name resolves to in the current checkout, or None. ``--end-of-options`` keeps a ref that
    starts with ``-`` from being read as an option."""
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _to_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    stability = d.pop("stability_json", None)
    d["stability"] = json.loads(stability) if stability else None
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
