"""Packaging: the core install has no torch, a device needs numpy and one runtime, and a missing extra is named.

The fast tests read pyproject.toml and constraints.txt, walk the import graph of the runner's and ``bench``'s path with
``ast`` (lazy imports included), and run ``edgestill bench`` / ``edgestill export`` with the compress libraries hidden.
The slow one builds a real venv with only numpy, onnxruntime and the core dependencies and benchmarks an .onnx written
with onnx.helper in it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from tests.layers import import_graph, module_files

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
HEAVY = ("torch", "onnxscript", "nncf", "litert_torch", "torchao", "ai_edge_quantizer", "sklearn", "safetensors")
"""What the compress extra brings and no device needs: never imported on the runner's or bench's path."""
DEVICE_PATH = ("edgestill.runtimes.runner", "edgestill.runtimes.inspect", "edgestill.runtimes.onnxruntime",
               "edgestill.runtimes.openvino", "edgestill.runtimes.litert", "edgestill.runtimes.ab")
BENCH_PATH = ("edgestill.commands.bench", "edgestill.benchmarks.bench", "edgestill.cli", "edgestill.__main__")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement such as ``torch==2.13.0`` or ``edgestill[onnx]``."""
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_core_dependencies_have_no_torch_and_extras_cover_the_rest() -> None:
    project = _pyproject()["project"]
    core = {_dist(r) for r in project["dependencies"]}
    assert core == {"numpy", "pyyaml", "typer", "rich", "psutil", "paramiko", "scipy", "matplotlib"}
    extras = project["optional-dependencies"]
    assert {"onnx", "openvino", "tflite", "compress", "all", "dev"} <= set(extras)
    assert {_dist(r) for r in extras["onnx"]} == {"onnxruntime", "onnx"}
    assert {_dist(r) for r in extras["openvino"]} == {"openvino"}
    assert {_dist(r) for r in extras["tflite"]} == {"ai-edge-litert"}
    assert {"torch", "onnxscript", "nncf", "litert-torch", "ai-edge-quantizer", "torchao"} <= {_dist(r) for r in extras["compress"]}
    assert extras["all"] == ["edgestill[onnx,openvino,tflite,compress]"]
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[all,hf,llm,dev]'" in makefile
    assert {"transformers", "tokenizers", "optimum", "optimum-onnx", "optimum-intel"} <= {_dist(r) for r in extras["hf"]}


def test_constraints_pin_every_declared_package() -> None:
    project = _pyproject()["project"]
    declared = {_dist(r) for r in project["dependencies"]}
    for name, reqs in project["optional-dependencies"].items():
        declared |= {_dist(r) for r in reqs if not r.startswith("edgestill[")}
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    assert not declared - set(pins), f"declared but not pinned in constraints.txt: {sorted(declared - set(pins))}"
    for dep in ("paramiko", "bcrypt", "cryptography", "pynacl", "invoke", "cffi", "pycparser"):
        assert pins.get(dep), dep


def _external_imports(module: str, mods: dict[str, Path], *, top_level_only: bool = False) -> set[str]:
    """Top-level names of the non-edgestill packages ``module`` imports (anywhere in its body, or only at module level)."""
    tree = ast.parse(mods[module].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {"edgestill"}


def test_runner_and_bench_import_closure_has_no_compress_library() -> None:
    """Every module the runner, the runtimes and ``edgestill bench`` can import (lazily too) stays off torch & co; the
    other commands are imported at CLI start-up, so their module-level imports must be light as well."""
    graph, mods = import_graph(SRC), module_files(SRC)
    seen, todo = set(), [*DEVICE_PATH, *BENCH_PATH]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    assert "edgestill.runtimes.runner" in seen and "edgestill.benchmarks.bench" in seen
    bad = {m: sorted(_external_imports(m, mods) & set(HEAVY)) for m in sorted(seen)}
    assert not {m: v for m, v in bad.items() if v}
    # what runs on a device needs numpy and one runtime, not even the core's CLI libraries
    device, todo = set(), list(DEVICE_PATH)
    while todo:
        m = todo.pop()
        if m not in device:
            device.add(m)
            todo.extend(graph.get(m, ()))
    needs = set().union(*(_external_imports(m, mods) for m in device)) - set(sys.stdlib_module_names)
    assert needs <= {"numpy", "onnxruntime", "onnx", "openvino", "openvino_telemetry", "ai_edge_litert",
                     "tflite_runtime"}, sorted(needs)
    commands = [m for m in mods if m.startswith("edgestill.commands.")]
    top = {m: sorted(_external_imports(m, mods, top_level_only=True) & set(HEAVY)) for m in commands}
    assert not {m: v for m, v in top.items() if v}


_HIDE = """
import sys, importlib.abc
HIDDEN = set(sys.argv[1].split(","))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
sys.argv = ["edgestill", *sys.argv[2:]]
from edgestill.cli import main
sys.exit(main())
"""


def _edgestill_without(hidden: tuple[str, ...], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a process where the ``hidden`` packages cannot be imported, as if their extra were not installed."""
    return subprocess.run([sys.executable, "-c", _HIDE, ",".join(hidden), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=180)


def _onnx_file(path: Path) -> Path:
    """An .onnx written with onnx.helper (not by edgestill): 'image' [batch, 3, 4, 4] -> 'logits' [batch, 5]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(1).standard_normal((48, 5)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 48], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["image", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "external", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])], [w, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _check_record(stdout: str) -> dict:
    doc = json.loads(stdout)
    m = doc["measurements"][0]
    assert m["kind"] == "measured" and m["n"] >= 5 and m["p50_ms"] > 0
    assert m["settings"]["manifest_present"] is False
    assert [(s["name"], s["shape"]) for s in m["settings"]["manifest"]["inputs"]] == [("image", ["batch", 3, 4, 4])]
    assert m["provenance"]["torch_imported"] is False
    return m


def test_bench_runs_with_the_compress_libraries_hidden(tmp_path: Path) -> None:
    model = _onnx_file(tmp_path / "ext.onnx")
    r = _edgestill_without(HEAVY, "bench", str(model), "--json", "--min-runs", "5", "--min-seconds", "0",
                           "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _check_record(r.stdout)


def test_a_command_whose_extra_is_missing_names_it(tmp_path: Path) -> None:
    r = _edgestill_without(HEAVY, "export", "--model", "tiny-cnn", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "pip install 'edgestill[compress]'" in r.stderr and "torch" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout and "internal error" not in r.stderr
    model = _onnx_file(tmp_path / "ext.onnx")
    r = _edgestill_without(("onnxruntime", "onnx"), "bench", str(model), "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert r.returncode == 2 and "pip install 'edgestill[onnx]'" in r.stderr, r.stderr


def test_missing_extra_error_only_for_a_library_that_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgestill.extras import EXTRAS, missing_extra_error

    monkeypatch.setitem(EXTRAS, "edgestill_absent_lib", "openvino")
    try:
        import edgestill_absent_lib  # type: ignore[import-not-found]  # noqa: F401
    except ModuleNotFoundError as exc:
        wrapped = RuntimeError("a library wrapped it")
        wrapped.__cause__ = exc
        err = missing_extra_error(wrapped)
    assert err is not None and err.exit_code == 2 and "pip install 'edgestill[openvino]'" in str(err)
    # numpy is installed: an ImportError naming it is a broken install, not a missing extra
    assert missing_extra_error(ModuleNotFoundError("No module named 'numpy'", name="numpy")) is None
    assert missing_extra_error(ModuleNotFoundError("No module named 'torch'", name="torch")) is None  # installed here


@pytest.mark.slow
def test_a_venv_with_only_numpy_onnxruntime_and_the_core_benches_an_onnx(tmp_path: Path) -> None:
    """The acceptance check of issue 13: a fresh venv with numpy, onnxruntime and the core dependencies (pinned by
    constraints.txt) and this project installed without its extras runs ``edgestill bench`` on an .onnx edgestill did
    not write; torch cannot be imported there, and a command that needs it says which extra to install."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    core = _pyproject()["project"]["dependencies"]
    pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    r = subprocess.run([*pip, "onnxruntime", *core], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    project = tmp_path / "project"  # a copy: an in-tree build would leave build/ and egg-info in the checkout
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(SRC, project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    r = subprocess.run([*pip, "--no-deps", str(project)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]

    r = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    model = _onnx_file(tmp_path / "ext.onnx")
    cli = venv / "bin" / "edgestill"
    r = subprocess.run([str(cli), "bench", str(model), "--json", "--min-runs", "5", "--min-seconds", "0",
                        "--db", str(tmp_path / "r.db")], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = _check_record(r.stdout)
    assert m["settings"]["manifest"]["source"]["read_with"].startswith("onnxruntime")  # no onnx package there
    r = subprocess.run([str(cli), "export", "--model", "tiny-cnn", "--out", str(tmp_path / "exp")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and "pip install 'edgestill[compress]'" in r.stderr, r.stderr[-3000:]
