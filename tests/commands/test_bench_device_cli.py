"""``edgestill bench --device NAME --inventory devices.yaml``: the cells run through the device's transport and are
stored with the device named; a device the inventory does not hold is bad input."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.badinput.conftest import assert_bad_input, edgestill

INVENTORY = """schema: edgestill-inventory
schema_version: 1
devices:
  - {name: bench-box, profile: x86-i7-12700k, transport: local}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    w = helper.make_tensor("W", TensorProto.FLOAT, [4, 8], np.random.default_rng(0).random(32, dtype=np.float32))
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "tiny.onnx")
    (tmp_path / "devices.yaml").write_text(INVENTORY)
    return tmp_path / "tiny.onnx", tmp_path / "devices.yaml"


def test_bench_on_an_inventory_device_stores_the_device(tmp_path: Path, files: tuple[Path, Path]) -> None:
    model, inv = files
    r = edgestill("bench", str(model), "--device", "bench-box", "--inventory", str(inv), "--min-runs", "5",
                  "--min-seconds", "0", "--db", str(tmp_path / "r.db"), "--json")
    assert r.returncode == 0, r.stderr
    (m,) = json.loads(r.stdout)["measurements"]
    assert m["kind"] == "measured" and m["n"] >= 5
    assert m["provenance"]["device"] == {"id": "bench-box", "profile": "x86-i7-12700k", "transport": "local"}
    with closing(sqlite3.connect(tmp_path / "r.db")) as con:
        (prov,) = con.execute("SELECT provenance_json FROM measurements").fetchone()
    assert json.loads(prov)["device"]["id"] == "bench-box"


@pytest.mark.parametrize(("args", "phrases"), [
    (["--device", "bench-bx"], ("no device 'bench-bx'", "did you mean 'bench-box'")),
    (["--device", "bench-box", "--repeat", "2"], ("--repeat", "--device bench-box")),
], ids=["misspelt device", "--repeat with a device"])
def test_bad_device_options_exit_2(tmp_path: Path, files: tuple[Path, Path], args: list[str],
                                   phrases: tuple[str, ...]) -> None:
    model, inv = files
    r = edgestill("bench", str(model), "--inventory", str(inv), "--db", str(tmp_path / "r.db"), *args)
    assert_bad_input(r, *phrases)
    assert not (tmp_path / "r.db").exists()
