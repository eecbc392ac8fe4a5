"""An estimate is never presented as a measurement: from ``edgestill estimate`` through the results store to the
report's JSON, Markdown and HTML, every record says its ``kind`` and estimates stay in their own labelled place."""

from __future__ import annotations

import json
from pathlib import Path

from tests.badinput.conftest import edgestill


def _walk(obj: object):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v)


def test_an_estimate_keeps_its_kind_from_the_command_to_the_report(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    r = edgestill("estimate", "--model", "mobilenet_v2", "--device", "raspberry-pi-5", "--runtime", "litert",
                  "--threads", "4", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    records = [d for d in _walk(doc) if "low_ms" in d and "high_ms" in d]
    assert records and all(d["kind"] == "estimated" for d in records)
    (est,) = records
    assert est["low_ms"] < est["settings"]["estimate_ms"] < est["high_ms"]
    assert "not measured" in r.stdout.lower()

    rep = edgestill("report", "--db", str(db), "--json", "--md", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html"))
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    for d in _walk(report):  # every cell that carries a latency says what kind of figure it is
        if "p50_ms" in d and "artifact" in d:
            assert d.get("kind") == "estimated", d
    assert all(not dev["cells"] for dev in report["devices"])  # nothing measured, so no measured cell
    assert any(dev["estimates"] for dev in report["devices"])
    md = (tmp_path / "r.md").read_text()
    assert "Estimates (cost model, not measured)" in md and "| estimated |" in md
    html = (tmp_path / "r.html").read_text()
    assert 'class="estimated"' in html and "not measured" in html
