"""int8 for text models: an embedder's cosine budget (met, and missed with the naive file kept as *.rejected), and
layers of a transformer kept in float in each format."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from tests.quantize.text_models import encoded, in_order, load, quantize_text, specs, tiny_folder  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-models")
    return {task: tiny_folder(root, task) for task in ("classify", "embed")}


def test_embedder_budget_is_mean_cosine_to_fp32(folders, tmp_path):
    """An embedder (task "embed") is judged by the mean cosine of its int8 embeddings to the fp32 file's, not top-1;
    a floor no int8 file can reach (cosine 1.0, no float fallback) keeps the naive file as *.rejected and says why."""
    loaded = load(folders["embed"])
    res = quantize_text(loaded, tmp_path / "ok", task="embed")
    assert res.passed, [f.error for f in res.formats]
    for f in res.formats:
        assert f.metric == "mean_cosine_to_fp32" and f.budget == 0.99
        assert 0.99 <= f.final.accuracy <= 1.0 and f.final.top1_agreement is None
        facts = f.budget_facts()
        assert facts["metric"] == "mean_cosine_to_fp32" and facts["budget_met"]
        assert json.loads(f.artifact.manifest_path.read_text())["quantization"]["min_cosine"] == 0.99

    miss = quantize_text(loaded, tmp_path / "miss", task="embed", formats=("onnx",), min_cosine=1.0, max_float_layers=0)
    (f,) = miss.formats
    assert not f.passed and f.artifact is None and miss.exit_code == 1
    assert "missed the cosine budget" in f.error and "below the 1 allowed" in f.error
    kept = sorted(p.name for p in f.rejected_files)
    assert "m-onnx-int8-dynamic.onnx.rejected" in kept and "m-onnx-int8-dynamic.manifest.json.rejected" in kept
    assert not (tmp_path / "miss" / "m-onnx-int8-dynamic.onnx").exists()


def test_layers_kept_float_in_a_transformer_per_format(folders, tmp_path):
    """The fallback's float layers reach each format's own exclusion (onnx nodes_to_exclude in dynamic int8, OpenVINO's
    ignored scope in NNCF's transformer mode, an ai-edge-quantizer no_quantize entry per op): a 'mixed' file that
    records them and still agrees with torch."""
    from edgestill.compress.quantize import QuantOptions, quantize_export
    from edgestill.compress.quantize.layers import quantizable_layers
    from edgestill.export.validate import validate

    loaded = load(folders["classify"])
    layers = [layer.name for layer in quantizable_layers(loaded.model, loaded.example_inputs)]
    keep = (layers[0], layers[-1])  # the first attention projection and the classifier head
    calib, _ = encoded(loaded, 32, seed=1)
    val, _ = encoded(loaded, 16, seed=2)
    for fmt, key in (("onnx", "excluded_nodes"), ("openvino", "ignored_ops"), ("tflite", "float_ops")):
        art = quantize_export(loaded.model, loaded.example_inputs, format=fmt, precision="int8", calibration=calib,
                              staging_dir=tmp_path / fmt, name="m", options=QuantOptions(float_layers=keep),
                              inputs=specs(loaded))
        assert art.precision == "mixed" and art.quantization["float_layers"] == list(keep)
        assert len(art.quantization[key]) == 2 if key != "float_ops" else art.quantization[key] == 2
        report = validate(art, loaded.model, in_order(loaded, val))
        assert report.outputs[0].sqnr_db > 20
        if fmt == "tflite":  # the two ops keep float weights: 2 fewer int8 FULLY_CONNECTED weights than Linear layers
            assert _int8_fully_connected(art.model_path) == len(layers) - 2


def _int8_fully_connected(path) -> int:
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(str(path))
    sub = model.subgraphs[0]
    count = 0
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = tfl.TFL_OP_CODE_TO_NAME.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        count += name == "FULLY_CONNECTED" and sub.tensors[op.inputs[1]].type == 9  # TensorType.INT8
    return count
