"""runtimes/text.py: raw text to a text artifact's named inputs (TextEncoder), and through a session (run_text);
artifacts without a tokenizer, or whose tokenizer leaves the folder, is unlisted or changed → InputError."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgestill.artifact import Artifact, TensorSpec
from edgestill.errors import InputError
from edgestill.runtimes.text import TextEncoder, run_text

pytest.importorskip("tokenizers")

TEXTS = ["play some jazz", "please set an alarm for six am tomorrow", "dim the kitchen lights"]


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.data.text import generated_texts
    from edgestill.models.hf import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(generated_texts(500, num_classes=8).texts).save(str(path))
    return path


def _specs(seq: int | str, dtype: str = "int64", *, kinds: bool = True) -> list[TensorSpec]:
    return [TensorSpec(name=n, shape=("batch", seq), dtype=dtype, kind=k if kinds else None, high=h)
            for n, k, h in (("input_ids", "ids", 1000), ("attention_mask", "mask", 2), ("token_type_ids", "type_ids", 2))]


def test_encoder_static_and_dynamic_length(tokenizer_file: Path) -> None:
    """A fixed length pads every batch to it, in the file's dtype (int32 as TFLite takes); a dynamic length pads to
    the longest text; inputs are matched by kind, or by their Hugging Face names when the kind is missing; the same
    tokens either way."""
    static = TextEncoder(tokenizer_file=tokenizer_file, inputs=_specs(16, "int32"), max_length=16).encode(TEXTS)
    assert {k: (v.shape, v.dtype) for k, v in static.items()} == {
        n: ((3, 16), np.dtype("int32")) for n in ("input_ids", "attention_mask", "token_type_ids")}
    dynamic = TextEncoder(tokenizer_file=tokenizer_file, inputs=_specs("seq", kinds=False), max_length=16).encode(TEXTS)
    longest = int(static["attention_mask"].sum(1).max())
    assert dynamic["input_ids"].shape == (3, longest) and dynamic["input_ids"].dtype == np.int64
    np.testing.assert_array_equal(dynamic["input_ids"], static["input_ids"][:, :longest])
    np.testing.assert_array_equal(dynamic["attention_mask"].sum(1), static["attention_mask"].sum(1))
    assert (static["input_ids"][static["attention_mask"] == 0] == 0).all()  # padded with [PAD]


def test_encoder_refusals(tokenizer_file: Path) -> None:
    """A float input, a 3-D input, a bad max_length, no texts, a non-string, a text longer than the file's length
    (unless truncation is asked), a missing and a broken tokenizer file."""
    with pytest.raises(InputError, match="not one a tokenizer fills"):
        TextEncoder(tokenizer_file=tokenizer_file, inputs=[TensorSpec(name="x", shape=(1, 8), dtype="float32")],
                    max_length=8)
    with pytest.raises(InputError, match=r"text inputs are \(batch, sequence\)"):
        TextEncoder(tokenizer_file=tokenizer_file, inputs=[TensorSpec(name="input_ids", shape=(1, 8, 2), dtype="int64")],
                    max_length=8)
    with pytest.raises(InputError, match="max_length must be"):
        TextEncoder(tokenizer_file=tokenizer_file, inputs=_specs(8), max_length=0)
    enc = TextEncoder(tokenizer_file=tokenizer_file, inputs=_specs(6), max_length=6)
    with pytest.raises(InputError, match="no texts"):
        enc.encode([])
    with pytest.raises(InputError, match="text 1 is a int"):
        enc.encode(["ok", 3])
    with pytest.raises(InputError, match=r"text 1 .* tokens long.*at most 6.*truncat"):
        enc.encode(TEXTS)
    cut = enc.encode(TEXTS, truncate=True)
    assert cut["attention_mask"].sum(1).tolist() == [5, 6, 6]
    with pytest.raises(InputError, match="does not exist.*tokenizer.json"):
        TextEncoder(tokenizer_file=tokenizer_file.parent / "none.json", inputs=_specs(6), max_length=6).encode(TEXTS)
    broken = tokenizer_file.parent / "broken.json"
    broken.write_text('{"version": "1.0", "model":')
    with pytest.raises(InputError, match="not a tokenizer file"):
        TextEncoder(tokenizer_file=broken, inputs=_specs(6), max_length=6).encode(TEXTS)


def _artifact(folder: Path, tokenizer_file: Path, *, text: dict | None, listed: bool = True) -> Artifact:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.onnx").write_bytes(b"not loaded here")
    shutil.copyfile(tokenizer_file, folder / "m.tokenizer.json")
    files = {"m.onnx": hashlib.sha256(b"not loaded here").hexdigest()}
    if listed:
        files["m.tokenizer.json"] = hashlib.sha256((folder / "m.tokenizer.json").read_bytes()).hexdigest()
    art = Artifact(name="m", format="onnx", precision="fp32", directory=folder, model_file="m.onnx", files=files,
                   inputs=_specs(12), outputs=[TensorSpec(name="logits", shape=("batch", 4), dtype="float32")],
                   source={"text": text} if text is not None else {})
    art.write_manifest()
    return Artifact.load(art.manifest_path)  # what a user's session holds: the manifest read back


def test_for_artifact_reads_the_manifest(tmp_path: Path, tokenizer_file: Path) -> None:
    """An artifact with text facts gives an encoder of its inputs and tokenizer; without text facts, with a tokenizer
    name outside the folder (relative or absolute), unlisted in its files, missing or changed since export: refused."""
    text = {"task": "classify", "tokenizer": "m.tokenizer.json", "max_length": 12, "dynamic_length": False,
            "labels": ["a", "b", "c", "d"]}
    enc = TextEncoder.for_artifact(_artifact(tmp_path / "ok", tokenizer_file, text=text))
    assert enc.seq_len == 12 and enc.encode(TEXTS[:1])["input_ids"].shape == (1, 12)
    with pytest.raises(InputError, match="has no tokenizer.*Session.run"):
        TextEncoder.for_artifact(_artifact(tmp_path / "plain", tokenizer_file, text=None))
    outside = tmp_path / "secret.json"
    shutil.copyfile(tokenizer_file, outside)
    for name in ("../secret.json", str(outside)):
        art = _artifact(tmp_path / "escape", tokenizer_file, text={**text, "tokenizer": name})
        art.files[name] = hashlib.sha256(outside.read_bytes()).hexdigest()
        with pytest.raises(InputError, match="not a file inside the artifact's folder"):
            TextEncoder.for_artifact(art)
    with pytest.raises(InputError, match="does not list it"):
        TextEncoder.for_artifact(_artifact(tmp_path / "unlisted", tokenizer_file, text=text, listed=False))
    changed = _artifact(tmp_path / "changed", tokenizer_file, text=text)
    data = json.loads((changed.directory / "m.tokenizer.json").read_text())
    data["added_tokens"] = data["added_tokens"][:-1]
    (changed.directory / "m.tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="changed since export"):
        TextEncoder.for_artifact(changed)
    (changed.directory / "m.tokenizer.json").unlink()
    with pytest.raises(InputError, match="missing from"):
        TextEncoder.for_artifact(changed)


def test_exported_text_model_takes_raw_text(tmp_path: Path) -> None:
    """A tiny BERT classifier exported to ONNX, OpenVINO and TFLite (fixed length) and to ONNX with a dynamic length:
    raw text through each session gives the torch model's logits on the same tokens; a fixed-batch file gets the texts
    one at a time; an artifact without text facts is refused."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from edgestill.data.text import encode_texts
    from edgestill.export.api import ExportConfig, export
    from edgestill.models.hf import load_hf_model, make_tiny_hf
    from edgestill.runtimes.base import load

    folder = make_tiny_hf(tmp_path / "bert", family="bert", task="classify", hidden=32, heads=2, intermediate=64,
                          max_position=64)
    for dynamic, formats in ((False, ("onnx", "openvino", "tflite")), (True, ("onnx",))):
        loaded = load_hf_model(folder, seq_len=16, dynamic_seq=dynamic)
        names = [s.name for s in loaded.input_shapes]
        specs = [TensorSpec(name=s.name, shape=(1, "seq" if dynamic else 16), dtype="int64", kind=s.kind, high=s.high)
                 for s in loaded.input_shapes]
        tokens = encode_texts(folder / "tokenizer.json", TEXTS, max_length=16, input_names=names)
        with torch.no_grad():
            want = loaded.model(*(torch.from_numpy(tokens[n]) for n in names)).numpy()
        results = export(loaded.model, loaded.example_inputs,
                         ExportConfig(formats=formats, inputs=specs, name=f"bert{int(dynamic)}"), tmp_path / "out",
                         validation_inputs=[tokens[n] for n in names], source=loaded.source)
        for result in results:
            art = Artifact.load(result.artifact.manifest_path)
            assert art.source["text"]["labels"] == ["weather", "alarm", "music", "navigation"]
            assert art.source["text"]["dynamic_length"] is dynamic
            session = load(art)
            got = run_text(session, TEXTS)
            np.testing.assert_allclose(next(iter(got.values())), want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{art.format} dynamic={dynamic}")
    art.source.pop("text")
    with pytest.raises(InputError, match="has no tokenizer"):
        run_text(load(art), TEXTS)
