"""int8 for text classifiers through the accuracy budget: each format's transformer route, the tokenizer and named
inputs carried by every int8 file, and multi-input data (named or in model order) checked before anything is written."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("transformers")

from edgestill.compress.quantize import QuantizeConfig  # noqa: E402
from edgestill.compress.quantize.options import TEXT_DEFAULTS  # noqa: E402
from tests.quantize.text_models import encoded, in_order, load, quantize_text, specs, tiny_folder  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {"classify": tiny_folder(tmp_path_factory.mktemp("text-models"), "classify")}


def test_classifier_int8_in_every_format_takes_its_transformer_route_and_keeps_the_tokenizer(folders, tmp_path):
    """precision "int8" on a text classifier: onnx dynamic, openvino NNCF transformer (static, calibrated on the named
    arrays), tflite ai-edge-quantizer dynamic; each file published within budget, named inputs kept, the tokenizer
    beside it, the route and its reason in the manifest."""
    loaded = load(folders["classify"])
    res = quantize_text(loaded, tmp_path / "q", task="classify")
    assert res.passed and res.exit_code == 0, [f.error for f in res.formats]
    for f in res.formats:
        assert f.precision == TEXT_DEFAULTS[f.format]["precision"]
        assert f.metric == "top1_agreement_with_fp32" and f.final.accuracy >= 0.99
        man = json.loads(f.artifact.manifest_path.read_text())
        q = man["quantization"]
        assert q["chosen"]["model_type"] == "transformer" and q["chosen"]["why"]
        assert [s["name"] for s in man["inputs"]] == [s.name for s in loaded.input_shapes]
        assert man["inputs"][0]["kind"] == "ids" and man["inputs"][0]["high"] == loaded.input_shapes[0].high
        text = man["source"]["text"]
        assert text["task"] == "classify" and "tokenizer_path" not in text
        assert (tmp_path / "q" / text["tokenizer"]).is_file() and text["tokenizer"] in man["files"]
    ov = json.loads(next(f for f in res.formats if f.format == "openvino").artifact.manifest_path.read_text())
    assert ov["quantization"]["model_type"] == "transformer" and ov["calibration"]["n"] == 64
    assert len(ov["calibration"]["sample_shape"]) == len(loaded.input_shapes)  # one shape per named input


def test_named_lists_and_dicts_are_the_same_data(folders, tmp_path):
    """Multi-input data as a dict named like the inputs or as a list in model order calibrates identically (the
    manifest's calibration hash); bad inputs tried: an input missing from the dict, arrays of different N, too few
    arrays, token ids past the vocabulary, a mask that is not 0/1 (all InputError before anything is written)."""
    from edgestill.compress.quantize.budget import check_inputs
    from edgestill.errors import InputError

    loaded = load(folders["classify"])
    arrays, _ = encoded(loaded, 40, seed=3)
    cfg = QuantizeConfig(formats=("openvino",), precision="int8", bench_latency=False)
    kw = {"input_specs": specs(loaded), "task": "classify"}
    m, ex = loaded.model, loaded.example_inputs
    by_name = check_inputs(m, ex, cfg, calibration=arrays, calibration_ids=None, eval_x=arrays, **kw)
    by_order = check_inputs(m, ex, cfg, calibration=list(in_order(loaded, arrays)), calibration_ids=None, eval_x=arrays, **kw)
    assert by_name[2]["sha256"] == by_order[2]["sha256"] and isinstance(by_name[1], tuple)

    def refused(data, match):
        with pytest.raises(InputError, match=match):
            check_inputs(m, ex, cfg, calibration=data, calibration_ids=None, eval_x=arrays, **kw)

    refused({k: v for k, v in arrays.items() if k != "attention_mask"}, "attention_mask is missing")
    refused({**arrays, "attention_mask": arrays["attention_mask"][:-1]}, "different numbers of samples")
    refused(list(in_order(loaded, arrays))[:2], "gives 2 array")
    vocab = loaded.input_shapes[0].high
    bad_ids = arrays["input_ids"].copy()
    bad_ids[0, 0] = vocab
    refused({**arrays, "input_ids": bad_ids}, f"outside \\[0, {vocab}\\).*past the embedding table")
    refused({**arrays, "attention_mask": arrays["attention_mask"] * 2}, "values other than 0 and 1")
    assert not (tmp_path / "q").exists()



def test_auto_calibration_splits_named_inputs_and_starts_with_the_text_default(folders, tmp_path):
    """calibration_method "auto" on static onnx int8 of a text model: every input is split into the same fit and
    held-out samples, each candidate is scored on its runtime, and the text default (minmax) is tried first."""
    from edgestill.compress.quantize import QuantOptions, quantize_export

    loaded = load(folders["classify"])
    calib, _ = encoded(loaded, 40, seed=1)
    art = quantize_export(loaded.model, loaded.example_inputs, format="onnx", precision="int8-static", calibration=calib,
                          staging_dir=tmp_path, name="m", options=QuantOptions(calibration_method="auto"),
                          inputs=specs(loaded))
    auto = art.quantization["auto"]
    assert auto["candidates"][0]["calibration_method"] == "minmax" and auto["winner"]["top1_agreement"] is not None
    assert art.calibration["n"] == auto["split"]["fit"] == 30 and len(art.calibration["held_out_ids"]) == 10
