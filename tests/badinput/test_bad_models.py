"""Bad models, shapes, tolerances and budgets through ``edgestill export`` and ``edgestill quantize`` (issue 12,
classes 3 and 4).

Every case runs the real CLI against an --out folder another edgestill command wrote, with ``--overwrite``: the
command would empty it, so the case also proves every input is checked before anything in --out is removed. Each
must exit 2 with one paragraph naming the bad value, write no artifact and leave that folder byte for byte as it was.

Bad inputs tried (ids): an input shape or sample count too large for memory, a batch other than 1 or N, a zero or
negative dim, a rank over 8; an empty, garbage or truncated .onnx, one missing its external data, one whose data is
truncated and one whose data lies outside its folder; an empty and a garbage .pt2; a wrong input rank or channel
count for a conv net; NaN, Inf and negative tolerances; float64 and int32 checkpoint weights, a truncated checkpoint;
a factory (or its module) that calls sys.exit(0) or raises; an fp32 reference at chance level under the int8 accuracy
budget; data of the wrong shape against an --overwrite folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.badinput.conftest import assert_bad_input, edgestill, no_artifacts, tree

TINY = "tests.export.models:tiny_cnn"
TINY_SHAPE = "1x3x16x16"


def _foreign_out(out: Path) -> dict[str, bytes]:
    """An --out another command (distill) wrote: --overwrite lets export/quantize empty it, but only once inputs check out."""
    from edgestill.outdir import write_marker

    out.mkdir(parents=True)
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "student.safetensors").write_bytes(b"earlier result, must survive a refused run")
    (out / "notes.txt").write_text("keep me\n")
    write_marker(out, "distill")
    return tree(out)


def _tiny_onnx(path: Path, *, external: bool = False) -> None:
    """A one-node ONNX model (x + W, W a 3x16x16 constant) built with onnx.helper: no torch export needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 3, 16, 16), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))


def _relocate_external_data(path: Path, location: str) -> None:
    """Point every external tensor of the model at ``location`` (moving the data file there): a crafted model."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                (path.parent / e.value).rename(path.parent / location)
                e.value = location
    onnx.save_model(model, str(path))


def _checkpoint(path: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.export.models import tiny_cnn

    state = {k: v.clone() for k, v in tiny_cnn().state_dict().items()}
    key = "0.0.weight"
    state[key] = state[key].to(getattr(torch, dtype)) if dtype != "int32" else (state[key] * 100).to(torch.int32)
    save_file(state, str(path))


def _chance_npz(path: Path, n: int = 200) -> None:
    """Samples whose labels the (untrained) tiny CNN never predicts: its fp32 accuracy is 0%, so int8 at 0% 'meets' any budget."""
    import torch

    from tests.export.models import tiny_cnn

    x = np.random.default_rng(0).standard_normal((n, 3, 16, 16)).astype(np.float32)
    with torch.no_grad():
        pred = tiny_cnn()(torch.from_numpy(x)).argmax(1).numpy()
    np.savez(path, x=x, y=((pred + 1) % 10).astype(np.int64))


def _files(tmp: Path) -> dict[str, Path]:
    """Every bad file the cases point at, made on demand under ``tmp``."""
    f = {}
    f["empty.onnx"] = tmp / "empty.onnx"
    f["empty.onnx"].write_bytes(b"")
    f["garbage.onnx"] = tmp / "garbage.onnx"
    f["garbage.onnx"].write_bytes(np.random.default_rng(1).bytes(4096))
    good = tmp / "good.onnx"
    _tiny_onnx(good)
    f["truncated.onnx"] = tmp / "truncated.onnx"
    f["truncated.onnx"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    f["nodata.onnx"] = tmp / "nodata.onnx"
    _tiny_onnx(f["nodata.onnx"], external=True)
    (tmp / "nodata.onnx.data").unlink()
    f["shortdata.onnx"] = tmp / "shortdata.onnx"
    _tiny_onnx(f["shortdata.onnx"], external=True)
    data = tmp / "shortdata.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    f["outside.onnx"] = tmp / "sub" / "outside.onnx"
    f["outside.onnx"].parent.mkdir()
    _tiny_onnx(f["outside.onnx"], external=True)
    _relocate_external_data(f["outside.onnx"], "../outside.onnx.data")
    f["empty.pt2"] = tmp / "empty.pt2"
    f["empty.pt2"].write_bytes(b"")
    f["garbage.pt2"] = tmp / "garbage.pt2"
    f["garbage.pt2"].write_bytes(b"PK\x03\x04" + np.random.default_rng(2).bytes(4096))
    for dtype in ("float64", "int32"):
        f[f"{dtype}.safetensors"] = tmp / f"{dtype}.safetensors"
        _checkpoint(f[f"{dtype}.safetensors"], dtype)
    f["truncated.safetensors"] = tmp / "truncated.safetensors"
    f["truncated.safetensors"].write_bytes(f["float64.safetensors"].read_bytes()[:100])
    f["chance.npz"] = tmp / "chance.npz"
    _chance_npz(f["chance.npz"])
    f["wrong-shape.npz"] = tmp / "wrong-shape.npz"
    np.savez(f["wrong-shape.npz"], x=np.zeros((8, 3, 9, 9), np.float32))
    return f


# (id, argv with {FILE} placeholders, phrases the one-paragraph error must name)
EXPORT_CASES = [
    ("input-shape-too-big-for-memory", ["--model", TINY, "--input-shape", "1x3x65536x65536"], ["1x3x65536x65536", "memory"]),
    ("dynamic-input-shape-too-big", ["--model", TINY, "--input-shape", "Nx3x100000x4096"], ["Nx3x100000x4096", "memory"]),
    ("samples-too-big-for-memory", ["--model", TINY, "--input-shape", TINY_SHAPE, "--samples", "100000000"], ["100000000", "memory"]),
    ("input-shape-zero-dim", ["--model", TINY, "--input-shape", "1x0x16x16"], ["1x0x16x16", "'0'"]),
    ("input-shape-negative-dim", ["--model", TINY, "--input-shape", "1x3x-16x16"], ["1x3x-16x16", "-16"]),
    ("input-shape-rank-9", ["--model", TINY, "--input-shape", "1x1x1x1x1x1x1x1x1"], ["9 dims", "at most 8"]),
    ("onnx-external-data-truncated", ["--model", "{shortdata.onnx}", "--format", "openvino"], ["shortdata.onnx.data", "truncated"]),
    ("onnx-external-data-outside-folder", ["--model", "{outside.onnx}", "--format", "openvino"],
     ["../outside.onnx.data", "outside its folder"]),
    ("input-shape-batch-100000", ["--model", TINY, "--input-shape", "100000x3x4096x4096"], ["100000x3x4096x4096", "batch dim must be 1"]),
    ("onnx-empty-file", ["--model", "{empty.onnx}", "--format", "openvino"], ["empty.onnx", "empty"]),
    ("onnx-garbage", ["--model", "{garbage.onnx}", "--format", "openvino"], ["garbage.onnx", "not an ONNX model"]),
    ("onnx-truncated", ["--model", "{truncated.onnx}", "--format", "openvino"], ["truncated.onnx", "truncated"]),
    ("onnx-missing-external-data", ["--model", "{nodata.onnx}", "--format", "openvino"], ["nodata.onnx.data", "external data"]),
    ("pt2-empty-file", ["--model", "{empty.pt2}", "--format", "onnx"], ["empty.pt2", "torch.export"]),
    ("pt2-garbage", ["--model", "{garbage.pt2}", "--format", "onnx"], ["garbage.pt2", "torch.export"]),
    ("conv-net-wrong-input-rank", ["--model", TINY, "--input-shape", "1x32x32", "--format", "onnx"],
     ["forward failed", "1x32x32", "channels"]),
    ("conv-net-wrong-channels", ["--model", TINY, "--input-shape", "1x5x16x16", "--format", "onnx"],
     ["forward failed", "1x5x16x16"]),
    ("tolerance-nan", ["--model", TINY, "--input-shape", TINY_SHAPE, "--tolerance", "fp32.atol=nan"], ["fp32.atol", "nan"]),
    ("tolerance-inf", ["--model", TINY, "--input-shape", TINY_SHAPE, "--tolerance", "int8.min_sqnr_db=inf"], ["min_sqnr_db", "inf"]),
    ("tolerance-negative", ["--model", TINY, "--input-shape", TINY_SHAPE, "--tolerance", "fp16.rtol=-0.1"], ["rtol", "-0.1"]),
    ("checkpoint-float64-weights", ["--model", TINY, "--input-shape", TINY_SHAPE, "--checkpoint", "{float64.safetensors}"],
     ["0.0.weight", "float64", "float32"]),
    ("checkpoint-int32-weights", ["--model", TINY, "--input-shape", TINY_SHAPE, "--checkpoint", "{int32.safetensors}"],
     ["0.0.weight", "int32", "float32"]),
    ("checkpoint-truncated", ["--model", TINY, "--input-shape", TINY_SHAPE, "--checkpoint", "{truncated.safetensors}"],
     ["truncated.safetensors", "truncated"]),
    ("factory-calls-sys-exit-0", ["--model", "tests.export.models:exits_factory", "--input-shape", TINY_SHAPE],
     ["exits_factory", "SystemExit 0", "while building the model"]),
    ("factory-module-exits-on-import", ["--model", "tests.export.exits_on_import:build", "--input-shape", TINY_SHAPE],
     ["exits_on_import", "SystemExit 0", "import"]),
    ("factory-raises", ["--model", "tests.export.models:raising_factory", "--input-shape", TINY_SHAPE],
     ["raising_factory", "RuntimeError", "weights folder /nonexistent/weights not found"]),
    ("factory-module-raises-on-import", ["--model", "tests.export.raises_on_import:build", "--input-shape", TINY_SHAPE],
     ["raises_on_import", "ValueError", "CONFIG_PATH is not set"]),
    ("data-wrong-shape-with-overwrite", ["--model", TINY, "--input-shape", TINY_SHAPE, "--data", "{wrong-shape.npz}"],
     ["wrong-shape.npz", "9, 9"]),
    ("int8-budget-fp32-at-chance", ["--model", TINY, "--input-shape", TINY_SHAPE, "--format", "onnx",
                                    "--precision", "int8-static", "--data", "{chance.npz}"], ["chance", "0.00%", "10 classes"]),
]

QUANTIZE_CASES = [
    ("input-shape-too-big-for-memory", ["--model", TINY, "--input-shape", "1x3x65536x65536", "--data", "{chance.npz}"],
     ["1x3x65536x65536", "memory"]),
    ("conv-net-wrong-input-rank", ["--model", TINY, "--input-shape", "1x16x16", "--data", "{chance.npz}"],
     ["forward failed", "1x16x16"]),
    ("tolerance-nan", ["--model", TINY, "--input-shape", TINY_SHAPE, "--data", "{chance.npz}", "--tolerance", "int8.min_cosine=nan"],
     ["min_cosine", "nan"]),
    ("checkpoint-float64-weights", ["--model", TINY, "--input-shape", TINY_SHAPE, "--data", "{chance.npz}",
                                    "--checkpoint", "{float64.safetensors}"], ["0.0.weight", "float64"]),
    ("factory-calls-sys-exit-0", ["--model", "tests.export.models:exits_factory", "--input-shape", TINY_SHAPE, "--data", "{chance.npz}"],
     ["exits_factory", "SystemExit 0"]),
    ("budget-fp32-at-chance", ["--model", TINY, "--input-shape", TINY_SHAPE, "--data", "{chance.npz}"], ["chance", "0.00%", "10 classes"]),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _files(tmp_path_factory.mktemp("bad-models"))


def _fill(argv: list[str], files: dict[str, Path]) -> list[str]:
    return [str(files[a[1:-1]]) if a.startswith("{") and a.endswith("}") else a for a in argv]


def _run_refused(command: str, argv: list[str], phrases: list[str], files: dict[str, Path], tmp_path: Path,
                 extra: tuple[str, ...] = ()) -> None:
    out = tmp_path / "out"
    before = _foreign_out(out)
    r = edgestill(command, *_fill(argv, files), *extra, "--out", str(out), "--overwrite")
    assert_bad_input(r, *phrases)
    assert tree(out) == before, "a refused run changed the --out folder it was allowed to overwrite"
    assert no_artifacts(out)


@pytest.mark.parametrize(("argv", "phrases"), [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_export_refuses(argv: list[str], phrases: list[str], bad_files: dict[str, Path], tmp_path: Path) -> None:
    _run_refused("export", argv, phrases, bad_files, tmp_path)


@pytest.mark.parametrize(("argv", "phrases"), [c[1:] for c in QUANTIZE_CASES], ids=[c[0] for c in QUANTIZE_CASES])
def test_quantize_refuses(argv: list[str], phrases: list[str], bad_files: dict[str, Path], tmp_path: Path) -> None:
    _run_refused("quantize", argv, phrases, bad_files, tmp_path, extra=("--format", "onnx", "--no-bench"))


def test_export_into_fresh_folder_leaves_nothing(bad_files: dict[str, Path], tmp_path: Path) -> None:
    """A new --out is not even created when the model fails on its example input."""
    out = tmp_path / "new"
    r = edgestill("export", "--model", TINY, "--input-shape", "1x32x32", "--format", "onnx", "--out", str(out))
    assert_bad_input(r, "forward failed")
    assert not out.exists()
