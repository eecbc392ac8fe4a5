"""``edgestill distill`` and ``edgestill run`` take text recipes (the same commands and engine as image recipes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.chain.test_text_run import recipe


def test_edgestill_distill_and_run_take_a_text_recipe(tmp_path: Path) -> None:
    """The CLI: ``distill`` stops after the student (no artifacts), ``run`` goes on and its summary shows the
    embedder's agreement columns; a smaller student (hidden 16) learns at the teacher's width through its projection."""
    doc = recipe("text-embed", student={"layers": 1, "hidden": 16, "heads": 2},
                 data={"text": "builtin", "samples": 100, "seed": 0})
    path = tmp_path / "emb.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "EDGESTILL_CACHE": str(tmp_path / "cache")}

    def edgestill(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgestill", *args], capture_output=True, text=True, env=env,
                              timeout=300)

    d = edgestill("distill", str(path), "--out", str(tmp_path / "d"), "--train-threads", "1", "--json")
    assert d.returncode == 0, d.stderr[-3000:]
    report = json.loads(d.stdout)
    assert report["kind"] == "distill" and report["artifacts"] == [] and report["student"]["teacher_cosine"] is not None
    assert (tmp_path / "d" / "checkpoints" / "student" / "2_Dense" / "model.safetensors").is_file()
    r = edgestill("run", str(path), "--out", str(tmp_path / "r"), "--db", str(tmp_path / "r.db"), "--train-threads", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cosine" in r.stdout and "retrieval" in r.stdout and "student-onnx-fp32" in r.stdout
