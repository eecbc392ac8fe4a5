"""models/loading.py: model specs, checkpoints, .pt2 programs, ONNX sources and input shapes; every bad input → InputError."""

from __future__ import annotations

import numpy as np
import pytest

from edgestill.errors import InputError, UnknownNameError
from edgestill.models.loading import (
    InputShape, load_checkpoint, load_exported_program, load_model, parse_input_shape, read_state_dict, resolve_model,
)


@pytest.mark.parametrize(
    ("text", "dims", "dynamic"),
    [("1x3x224x224", (1, 3, 224, 224), False), ("Nx3x32x32", (1, 3, 32, 32), True), ("?x128", (1, 128), True),
     ("1X3X8X8", (1, 3, 8, 8), False)],
)
def test_parse_input_shape(text, dims, dynamic) -> None:
    shape = parse_input_shape(text)
    assert shape.dims == dims and shape.dynamic_batch is dynamic
    assert str(shape) == ("N" if dynamic else "1") + "x" + "x".join(map(str, dims[1:]))


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "not a shape"), ("224", "not a shape"), ("1x3xx224", "not a shape"), ("1x3x-2x2", "'-2' is not a whole number"),
     ("1x3xNx8", "only the batch"), ("4x3x8x8", "batch dim must be 1"), ("1x3.5x8", "'3.5'")],
)
def test_malformed_input_shapes_are_refused(text, message) -> None:
    with pytest.raises(InputError, match=message):
        parse_input_shape(text)


def test_input_shape_samples_are_seeded_and_typed() -> None:
    s = InputShape(dims=(1, 3, 4, 4))
    a, b = s.samples(5, seed=3), s.samples(5, seed=3)
    assert a.shape == (5, 3, 4, 4) and a.dtype == np.float32 and np.array_equal(a, b)
    ids = InputShape(dims=(1, 16), dtype="int64", low=0, high=7).samples(50)
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 7
    assert tuple(s.example().shape) == (1, 3, 4, 4)


def test_unknown_model_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'mobilenetv2-student'") as info:
        resolve_model("mobilenetv2-studnet")
    assert info.value.exit_code == 2 and "resnet-teacher" in str(info.value)


def test_factory_models() -> None:
    import torch

    model = resolve_model("tests.export.models:tiny_cnn")
    assert isinstance(model, torch.nn.Module) and not model.training
    with pytest.raises(InputError, match="cannot import module 'tests.export.nope'"):
        resolve_model("tests.export.nope:build")
    with pytest.raises(UnknownNameError, match="Did you mean 'tiny_cnn'"):
        resolve_model("tests.export.models:tiny_cn")
    with pytest.raises(InputError, match="returned a str, not a torch.nn.Module"):
        resolve_model("tests.export.models:not_a_model")
    with pytest.raises(InputError, match="neither a built-in name nor a factory"):
        resolve_model("tests/export/models.py:tiny_cnn")


@pytest.fixture()
def student():
    from edgestill.models import create_model

    return create_model("mobilenetv2-student", num_classes=10, seed=0)


def test_checkpoints_round_trip_in_both_formats(tmp_path, student) -> None:
    import torch
    from safetensors.torch import save_file

    from edgestill.models import create_model

    save_file(student.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": student.state_dict(), "epoch": 3}, tmp_path / "w.pt")  # a training-script layout
    x = torch.randn(2, 3, 32, 32)
    for name in ("w.safetensors", "w.pt"):
        fresh = create_model("mobilenetv2-student", num_classes=10, seed=1)
        load_checkpoint(fresh, tmp_path / name)
        assert torch.equal(fresh(x), student.eval()(x)), name


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_checkpoint(tmp_path, student, suffix) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(student.state_dict(), path)
    else:
        save_file(student.state_dict(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_state_dict(path)


def test_pickled_checkpoint_needs_trust(tmp_path) -> None:
    import torch

    from tests.conftest import build_tiny_cnn

    model = build_tiny_cnn()
    path = tmp_path / "whole-model.pt"
    torch.save(model, path)  # the whole module pickled: loading it runs code from the file
    with pytest.raises(InputError, match="pickled Python objects.*--trust-checkpoint"):
        read_state_dict(path)
    state = read_state_dict(path, trust=True)
    assert set(state) == set(model.state_dict())


def test_checkpoint_of_another_architecture_lists_the_keys(tmp_path, student) -> None:
    from safetensors.torch import save_file

    from edgestill.models import create_model

    path = tmp_path / "teacher.safetensors"
    save_file(create_model("resnet-teacher", num_classes=10, seed=0).state_dict(), str(path))
    with pytest.raises(InputError, match="missing keys .*unexpected keys") as info:
        load_checkpoint(student, path)
    assert "stem.0.weight" in str(info.value) or "features" in str(info.value)
    other_classes = tmp_path / "c100.safetensors"
    save_file(create_model("mobilenetv2-student", num_classes=100, seed=0).state_dict(), str(other_classes))
    with pytest.raises(InputError, match=r"shape mismatches \(2\).*checkpoint \[100"):
        load_checkpoint(student, other_classes)


def test_missing_and_foreign_files(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(InputError, match="unknown file type"):
        read_state_dict(tmp_path / "w.txt")
    (tmp_path / "junk.pt2").write_bytes(b"not a program")
    with pytest.raises(InputError, match="not a torch.export program"):
        load_exported_program(tmp_path / "junk.pt2")


def test_load_model_defaults_and_misuse(tmp_path) -> None:
    loaded = load_model("mobilenetv2-student")
    assert loaded.kind == "builtin" and [s.dims for s in loaded.input_shapes] == [(1, 3, 32, 32)]
    assert tuple(loaded.example_inputs[0].shape) == (1, 3, 32, 32)
    assert load_model("mobilenetv2-student", input_shape="Nx3x16x16").input_shapes[0].dynamic_batch
    with pytest.raises(InputError, match="pass --input-shape"):
        load_model("tests.export.models:tiny_cnn")
    (tmp_path / "m.pt2").write_bytes(b"x")
    with pytest.raises(InputError, match="--checkpoint does not apply"):
        load_model(str(tmp_path / "m.pt2"), checkpoint=tmp_path / "w.safetensors")


def test_exported_program_source(tmp_path) -> None:
    import torch

    from tests.conftest import build_tiny_cnn

    model = build_tiny_cnn()
    x = torch.randn(1, 3, 32, 32)
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "tiny.pt2")
    loaded = load_model(str(tmp_path / "tiny.pt2"))
    assert loaded.kind == "exported-program" and loaded.input_shapes[0].dims == (1, 3, 32, 32)
    assert torch.allclose(loaded.model(x), model(x), atol=1e-6)


def test_onnx_source(tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 6])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), tmp_path / "relu.onnx")
    loaded = load_model(str(tmp_path / "relu.onnx"))
    assert loaded.model is None and loaded.onnx_path == tmp_path / "relu.onnx"
    assert loaded.input_shapes[0].dims == (1, 6) and loaded.input_shapes[0].dynamic_batch
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="not an ONNX model"):
        load_model(str(tmp_path / "bad.onnx"))


def test_checkpoint_dtypes_lossless_widening_only(tmp_path, student) -> None:
    """float16/bfloat16 weights load into a float32 model (a common half-precision save, nothing lost); float64
    (rounded on load) and integer weights (a different kind) are refused naming the tensor and both dtypes."""
    import torch
    from safetensors.torch import save_file

    from edgestill.models import create_model

    key = next(k for k, v in student.state_dict().items() if v.is_floating_point())
    for dtype in (torch.float16, torch.bfloat16):
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in student.state_dict().items()}
        save_file(state, str(tmp_path / "half.safetensors"))
        fresh = create_model("mobilenetv2-student", num_classes=10, seed=1)
        load_checkpoint(fresh, tmp_path / "half.safetensors")
        assert fresh.state_dict()[key].dtype == torch.float32
        assert torch.equal(fresh.state_dict()[key], state[key].float())
    for dtype, label in ((torch.float64, "float64"), (torch.int32, "int32")):
        state = dict(student.state_dict())
        state[key] = state[key].to(dtype)
        save_file(state, str(tmp_path / f"{label}.safetensors"))
        with pytest.raises(InputError, match=rf"{key}: checkpoint {label} vs model float32"):
            load_checkpoint(create_model("mobilenetv2-student", num_classes=10, seed=1), tmp_path / f"{label}.safetensors")


@pytest.mark.parametrize(("text", "message"), [
    ("1x1x1x1x1x1x1x1x1", "has 9 dims"),
    ("1x3x65536x65536", "needs .* of memory"),
])
def test_input_shapes_too_long_or_too_large(text, message) -> None:
    with pytest.raises(InputError, match=message):
        parse_input_shape(text)


def test_random_samples_are_checked_before_allocation(monkeypatch) -> None:
    monkeypatch.setenv("EDGESTILL_MEMORY_LIMIT", "1M")
    shape = parse_input_shape("1x3x32x32")
    assert shape.samples(10).shape == (10, 3, 32, 32)  # 10 x 3 KiB x (8 + 4) bytes: fits
    with pytest.raises(InputError, match="1000 random samples of input 1x3x32x32"):
        shape.samples(1000)


def test_forward_failure_on_the_example_input_is_one_paragraph() -> None:
    with pytest.raises(InputError, match=r"forward failed on the example input of shape 1x32x32 \(float32\): RuntimeError") as e:
        load_model("tests.export.models:tiny_cnn", input_shape="1x32x32")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("spec", "message"), [
    ("tests.export.models:exits_factory", r"exits_factory\(\) exited \(SystemExit 0\) while building the model"),
    ("tests.export.models:raising_factory", r"raising_factory\(\) raised RuntimeError: weights folder /nonexistent/weights not found\."),
    ("tests.export.exits_on_import:build", r"importing module 'tests.export.exits_on_import' exited \(SystemExit 0\)"),
    ("tests.export.raises_on_import:build", r"importing module 'tests.export.raises_on_import' raised ValueError: CONFIG_PATH"),
])
def test_factories_that_exit_or_raise(spec, message) -> None:
    with pytest.raises(InputError, match=message) as e:
        resolve_model(spec)
    assert "\n" not in str(e.value)
