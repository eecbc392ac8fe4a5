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
    a floor no int8 file can reach (cosine 1.0) runs the float-fallback search on the transformer's layers, then keeps
    the best file as *.rejected and says why."""
    loaded = load(folders["embed"])
    res = quantize_text(loaded, tmp_path / "ok", task="embed")
    assert res.passed, [f.error for f in res.formats]
    for f in res.formats:
        assert f.metric == "mean_cosine_to_fp32" and f.budget == 0.99
        assert 0.99 <= f.final.accuracy <= 1.0 and f.final.top1_agreement is None
        facts = f.budget_facts()
        assert facts["metric"] == "mean_cosine_to_fp32" and facts["budget_met"]
        assert json.loads(f.artifact.manifest_path.read_text())["quantization"]["min_cosine"] == 0.99

    # a floor no int8 file reaches: the search ranks every Linear and Embedding layer by simulated int8 sensitivity and
    # keeps the most sensitive float, one more per attempt up to max_float_layers; the best is kept as *.rejected
    miss = quantize_text(loaded, tmp_path / "miss", task="embed", formats=("onnx",), min_cosine=1.0, max_float_layers=2)
    (f,) = miss.formats
    assert not f.passed and f.artifact is None and miss.exit_code == 1 and f.stopped_by == "no more layers"
    assert "missed the cosine budget" in f.error and "below the 1 allowed" in f.error
    assert {"Linear", "Embedding"} <= {s.kind for s in f.sensitivity}
    ranked = [s.layer for s in f.sensitivity]
    assert [a.label for a in f.attempts] == ["naive", "float-top1", "float-top2"]
    assert [a.float_layers for a in f.attempts[1:]] == [tuple(ranked[:1]), tuple(ranked[:2])]
    kept = sorted(p.name for p in f.rejected_files)
    assert any(k.endswith(".onnx.rejected") for k in kept) and any(k.endswith(".manifest.json.rejected") for k in kept)
    published = {q.name for q in (tmp_path / "miss").glob("m-onnx-*.onnx")}
    assert published == {"m-onnx-fp32.onnx"}  # the budget's baseline only: no int8 or mixed file under a final name


def test_layers_kept_float_in_a_transformer_per_format(folders, tmp_path):
    """The fallback's float layers (the word embeddings, the first attention projection, the classifier head) reach each
    format's own exclusion: onnx nodes_to_exclude in dynamic int8, OpenVINO's ignored scope in NNCF's transformer
    mode, an ai-edge-quantizer no_quantize entry per op. The 'mixed' file records them, keeps those weights float and
    still agrees with torch."""
    from edgestill.compress.quantize import QuantOptions, quantize_export
    from edgestill.compress.quantize.layers import quantizable_layers
    from edgestill.export.validate import validate

    loaded = load(folders["classify"])
    layers = quantizable_layers(loaded.model, loaded.example_inputs)
    tables = [layer.name for layer in layers if layer.kind == "Embedding"]
    linear = [layer.name for layer in layers if layer.kind == "Linear"]
    word = next(n for n in tables if n.endswith("word_embeddings"))
    keep = (word, linear[0], linear[-1])
    calib, _ = encoded(loaded, 32, seed=1)
    val, _ = encoded(loaded, 16, seed=2)
    for fmt, key in (("onnx", "excluded_nodes"), ("openvino", "ignored_ops"), ("tflite", "float_ops")):
        art = quantize_export(loaded.model, loaded.example_inputs, format=fmt, precision="int8", calibration=calib,
                              staging_dir=tmp_path / fmt, name="m", options=QuantOptions(float_layers=keep),
                              inputs=specs(loaded))
        assert art.precision == "mixed" and art.quantization["float_layers"] == list(keep)
        found = art.quantization[key]
        assert (found if key == "float_ops" else len(found)) == 3
        report = validate(art, loaded.model, in_order(loaded, val))
        assert report.outputs[0].sqnr_db > 20
        if fmt == "onnx":  # the word table stays float, the token-type table int8; the float MatMuls are the kept ones
            assert _onnx_gather_tables(art.model_path) == {"float": 1, "int8": 1}
            assert _onnx_float_matmul_weights(art.model_path, loaded.model, layers) == {linear[0], linear[-1]}
        if fmt == "tflite":  # float weights for the two Linear layers and the word table, int8 for the rest
            assert _tflite_int8_weights(art.model_path) == (len(linear) - 2, 1)


def _onnx_float_matmul_weights(path, model, layers) -> set[str]:
    """The torch layers whose weights (either orientation) feed a float MatMul/Gemm of the ONNX file."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    floats = [inits[n.input[1]] for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits
              and inits[n.input[1]].dtype == np.float32]
    mods = dict(model.named_modules())
    out = set()
    for layer in layers:
        w = mods[layer.name].weight.detach().numpy()
        same = [a for a in floats if a.size == w.size and ((a.shape == w.shape and np.allclose(a, w)) or np.allclose(a.T, w))]
        if layer.kind == "Linear" and same:
            out.add(layer.name)
    return out


def _onnx_gather_tables(path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(path)).graph
    inits = {i.name: i.data_type for i in graph.initializer}
    types = [inits[n.input[0]] for n in graph.node if n.op_type == "Gather" and n.input[0] in inits]
    return {"float": types.count(onnx.TensorProto.FLOAT), "int8": len(types) - types.count(onnx.TensorProto.FLOAT)}


def _tflite_int8_weights(path) -> tuple[int, int]:
    """(int8 FULLY_CONNECTED weights, int8 EMBEDDING_LOOKUP tables) in a .tflite."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as tfl

    model = tfl.read_model(str(path))
    sub = model.subgraphs[0]
    fc = lookup = 0
    for op in sub.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = str(tfl.TFL_OP_CODE_TO_NAME.get(max(code.builtinCode, code.deprecatedBuiltinCode)))
        if name.endswith(("FULLY_CONNECTED", "EMBEDDING_LOOKUP")):
            int8 = sub.tensors[op.inputs[1]].type == 9  # TensorType.INT8
            fc += name.endswith("FULLY_CONNECTED") and int8
            lookup += name.endswith("EMBEDDING_LOOKUP") and int8
    return fc, lookup
