"""models/hf.py: tiny Hugging Face folders built from configs, loaded back through the wrapper; every bad folder → InputError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from edgestill.errors import InputError  # noqa: E402
from edgestill.models.hf import is_hf_dir, load_hf_model, make_tiny_hf, max_seq_len, save_hf  # noqa: E402

SIZES = {"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64}
NAMES = {"bert": ["input_ids", "attention_mask", "token_type_ids"], "distilbert": ["input_ids", "attention_mask"],
         "roberta": ["input_ids", "attention_mask"]}
ARCH = {"bert": "Bert", "distilbert": "DistilBert", "roberta": "Roberta"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("hf")
    return {(family, task): make_tiny_hf(root / f"{family}-{task}", family=family, task=task, **SIZES)
            for family in NAMES for task in ("classify", "embed")}


def _copy(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / folder.name
    shutil.copytree(folder, out)
    return out


@pytest.mark.parametrize("family", list(NAMES))
@pytest.mark.parametrize("task", ["classify", "embed"])
def test_load_returns_the_contract(folders, family: str, task: str) -> None:
    """The named integer inputs of each family, their kinds and vocabulary, the output shape and the recorded source."""
    folder = folders[family, task]
    config = json.loads((folder / "config.json").read_text())
    loaded = load_hf_model(folder, seq_len=16)
    assert [s.name for s in loaded.input_shapes] == NAMES[family]
    assert [s.kind for s in loaded.input_shapes] == ["ids", "mask", "type_ids"][: len(NAMES[family])]
    assert all(s.dims == (1, 16) and s.dtype == "int64" and not s.dynamic_seq for s in loaded.input_shapes)
    assert loaded.input_shapes[0].low == 0 and loaded.input_shapes[0].high == config["vocab_size"]
    ids, mask, *types = (t.numpy() for t in loaded.example_inputs)
    assert [t.dtype for t in loaded.example_inputs] == [torch.int64] * len(NAMES[family])
    assert mask[0, 0] == 1 and mask[0, -1] == 0 and ids.max() < config["vocab_size"]  # a padded tail, ids in range
    assert all((t == 0).all() for t in types)
    out = loaded.model(*loaded.example_inputs)
    assert out.shape == ((1, 4) if task == "classify" else (1, 32))
    src = loaded.source
    assert src["kind"] == "hf" and src["family"] == family and src["path"] == str(folder)
    assert src["architecture"] == ARCH[family] + ("ForSequenceClassification" if task == "classify" else "Model")
    import hashlib

    assert src["sha256"] == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    text = src["text"]
    assert text["task"] == task and text["max_length"] == 16 and text["dynamic_length"] is False
    assert text["tokenizer_path"] == str(folder / "tokenizer.json") and Path(text["tokenizer_path"]).is_absolute()
    if task == "classify":
        assert text["labels"] == ["weather", "alarm", "music", "navigation"]
    else:
        assert "labels" not in text


@pytest.mark.parametrize("family", list(NAMES))
def test_wrapper_equals_transformers(folders, family: str) -> None:
    """Logits equal the transformers classifier's; the embedding is the mask-weighted mean of the last hidden state,
    so padding (whatever ids it holds) does not change it."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    texts = ["please set an alarm for seven thirty tomorrow", "play jazz"]
    for task, cls in (("classify", AutoModelForSequenceClassification), ("embed", AutoModel)):
        folder = folders[family, task]
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        batch = tok(texts, padding="max_length", max_length=24, return_tensors="pt")
        ref = cls.from_pretrained(str(folder), local_files_only=True).eval()
        loaded = load_hf_model(folder, seq_len=24)
        args = [batch[n] for n in NAMES[family]]
        with torch.no_grad():
            got = loaded.model(*args)
            out = ref(**{n: batch[n] for n in NAMES[family]})
        if task == "classify":
            torch.testing.assert_close(got, out.logits, rtol=1e-5, atol=1e-6)
        else:
            for row in range(2):
                n = int(batch["attention_mask"][row].sum())
                torch.testing.assert_close(got[row], out.last_hidden_state[row, :n].mean(0), rtol=1e-5, atol=1e-6)
            alone = loaded.model(*[a[1:2, : int(batch["attention_mask"][1].sum())] for a in args])
            torch.testing.assert_close(alone[0], got[1], rtol=1e-4, atol=1e-5)


def test_make_tiny_hf_is_deterministic_and_readable(tmp_path: Path, folders) -> None:
    """The same seed gives the same weights and tokenizer; AutoTokenizer reads the folder locally; a non-empty target
    folder and an unknown family are refused."""
    a = make_tiny_hf(tmp_path / "a", family="bert", seed=3, **SIZES)
    b = make_tiny_hf(tmp_path / "b", family="bert", seed=3, **SIZES)
    c = make_tiny_hf(tmp_path / "c", family="bert", seed=4, **SIZES)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    assert is_hf_dir(a) and not is_hf_dir(tmp_path) and not is_hf_dir(a / "config.json")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    with pytest.raises(InputError, match="not an empty folder"):
        make_tiny_hf(a, **SIZES)
    with pytest.raises(InputError, match="bert, distilbert, roberta"):
        make_tiny_hf(tmp_path / "d", family="gpt2", **SIZES)
    with pytest.raises(InputError, match="divisible by heads"):
        make_tiny_hf(tmp_path / "e", hidden=30, heads=4)


def test_save_hf_round_trips(tmp_path: Path, folders) -> None:
    """A loaded wrapper saved with save_hf loads back to the same outputs, with the tokenizer copied; a source without
    tokenizer.json and a non-model are refused."""
    loaded = load_hf_model(folders["distilbert", "classify"], seq_len=16)
    out = save_hf(loaded.model, folders["distilbert", "classify"], tmp_path / "saved")
    assert (out / "tokenizer.json").read_bytes() == (folders["distilbert", "classify"] / "tokenizer.json").read_bytes()
    again = load_hf_model(out, seq_len=16)
    torch.testing.assert_close(again.model(*loaded.example_inputs), loaded.model(*loaded.example_inputs))
    with pytest.raises(InputError, match="no tokenizer.json"):
        save_hf(loaded.model, tmp_path, tmp_path / "other")
    with pytest.raises(InputError, match="saves transformers models"):
        save_hf(torch.nn.Linear(2, 2), folders["distilbert", "classify"], tmp_path / "other")


def test_task_and_sequence_length(folders) -> None:
    """An embedder read from a classifier folder; 'classify' on a folder without a head, an unknown task, a sequence
    longer than the model's maximum (RoBERTa's is 2 less than its positions) and 0 are refused."""
    emb = load_hf_model(folders["bert", "classify"], task="embed", seq_len=8)
    assert emb.model(*emb.example_inputs).shape == (1, 32) and "labels" not in emb.source["text"]
    with pytest.raises(InputError, match="classifier head would be random"):
        load_hf_model(folders["bert", "embed"], task="classify")
    with pytest.raises(InputError, match="valid: classify, embed"):
        load_hf_model(folders["bert", "embed"], task="generate")
    config = json.loads((folders["roberta", "embed"] / "config.json").read_text())
    assert max_seq_len(config) == config["max_position_embeddings"] - 2 == 64
    assert load_hf_model(folders["roberta", "embed"], seq_len=64).input_shapes[0].dims == (1, 64)
    for family in ("roberta", "bert"):
        with pytest.raises(InputError, match="at most 64"):
            load_hf_model(folders[family, "embed"], seq_len=65)
    with pytest.raises(InputError, match="1 to 64"):
        load_hf_model(folders["bert", "embed"], seq_len=0)
    dyn = load_hf_model(folders["bert", "embed"], seq_len=16, dynamic_seq=True, dynamic_batch=True)
    assert all(s.dynamic_seq and s.dynamic_batch for s in dyn.input_shapes) and dyn.source["text"]["dynamic_length"]


def test_bad_folders_are_refused(tmp_path: Path, folders) -> None:
    """A hub id (not a folder), a file, no config.json, config.json not JSON, an unsupported family, custom code, no
    weights, only a pickled pytorch_model.bin, weights of another config, no tokenizer.json, a broken tokenizer.json
    and a tokenizer larger than the vocabulary: each an InputError that says what to do."""
    src = folders["bert", "classify"]
    with pytest.raises(InputError, match="local Hugging Face folders only"):
        load_hf_model("sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(InputError, match="not a folder"):
        load_hf_model(src / "config.json")
    with pytest.raises(InputError, match="no config.json"):
        load_hf_model(tmp_path)

    def broken(name: str, edit) -> Path:
        folder = _copy(src, tmp_path / name)
        edit(folder)
        return folder

    cases = [
        (lambda f: (f / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((src / "config.json").read_text()),
                                                              "model_type": "gpt2"})), "model_type 'gpt2'.*DistilBERT"),
        (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((src / "config.json").read_text()),
                                                              "auto_map": {"AutoModel": "m.M"}})), "custom code"),
        (lambda f: (f / "model.safetensors").unlink(), "has no weights.*model.safetensors"),
        (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickled pytorch_model.bin.*--trust-checkpoint"),
        (lambda f: shutil.copyfile(folders["bert", "embed"] / "model.safetensors", f / "model.safetensors"),
         "do not fit its config.json"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 20), "could not be loaded"),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer.json.*save_pretrained"),
        (lambda f: (f / "tokenizer.json").write_text("{}"), "not a tokenizer file"),
        (lambda f: (f / "config.json").write_text(json.dumps({**json.loads((src / "config.json").read_text()),
                                                              "vocab_size": 50})), "belongs to another model"),
    ]
    for i, (edit, message) in enumerate(cases):
        with pytest.raises(InputError, match=message):
            load_hf_model(broken(f"case{i}", edit))


def test_trusted_pickle_loads(tmp_path: Path, folders) -> None:
    """A folder with only pytorch_model.bin loads when the caller trusts it, to the same outputs."""
    from transformers import AutoModel

    folder = _copy(folders["distilbert", "embed"], tmp_path)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    loaded = load_hf_model(folder, seq_len=8, trust_checkpoint=True)
    ref = load_hf_model(folders["distilbert", "embed"], seq_len=8)
    np.testing.assert_allclose(loaded.model(*ref.example_inputs).detach().numpy(),
                               ref.model(*ref.example_inputs).detach().numpy(), rtol=1e-6, atol=1e-7)


def test_other_families_load(tmp_path: Path, folders) -> None:
    """XLM-RoBERTa, ELECTRA and MPNet folders (made from their configs, with the tiny tokenizers) load with their own
    inputs and give transformers' logits; MPNet and XLM-R take 2 positions less than their config lists."""
    from transformers import AutoModelForSequenceClassification, ElectraConfig, MPNetConfig, XLMRobertaConfig

    vocab = json.loads((folders["bert", "classify"] / "config.json").read_text())["vocab_size"]
    small = {"vocab_size": vocab, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "num_labels": 3}
    cases = {"xlm-roberta": (XLMRobertaConfig(max_position_embeddings=34, pad_token_id=1, type_vocab_size=1, **small),
                             "roberta", ["input_ids", "attention_mask"], 32),
             "electra": (ElectraConfig(embedding_size=32, max_position_embeddings=32, **small), "bert", NAMES["bert"], 32),
             "mpnet": (MPNetConfig(max_position_embeddings=34, pad_token_id=1, **small), "roberta",
                       ["input_ids", "attention_mask"], 32)}
    for family, (config, tokenizer_of, names, limit) in cases.items():
        torch.manual_seed(0)
        config.architectures = [f"{type(config).__name__.removesuffix('Config')}ForSequenceClassification"]
        hf = AutoModelForSequenceClassification.from_config(config).eval()
        folder = tmp_path / family
        hf.save_pretrained(folder)
        shutil.copyfile(folders[tokenizer_of, "classify"] / "tokenizer.json", folder / "tokenizer.json")
        loaded = load_hf_model(folder, seq_len=limit)
        assert [s.name for s in loaded.input_shapes] == names and loaded.source["family"] == family
        with pytest.raises(InputError, match=f"at most {limit}"):
            load_hf_model(folder, seq_len=limit + 1)
        with torch.no_grad():
            want = hf(**dict(zip(names, loaded.example_inputs))).logits
            torch.testing.assert_close(loaded.model(*loaded.example_inputs), want, rtol=1e-5, atol=1e-6)


def test_sentence_transformers_head(tmp_path: Path, folders) -> None:
    """An embedder folder with modules.json (cls or max pooling, a Dense projection with tanh, Normalize) gives what
    sentence-transformers computes, from the transformers outputs by hand; save_hf writes the head back; the head is
    part of the ONNX file. Refused: an unknown module, two pooling modes, a Dense of the wrong width, a Transformer in
    a subfolder, unreadable modules.json."""
    from transformers import AutoModel

    from edgestill.models.hf import Head, write_head

    src = folders["bert", "embed"]
    hf = AutoModel.from_pretrained(str(src), local_files_only=True).eval()
    torch.manual_seed(1)
    linear = torch.nn.Linear(32, 48)
    made = {}
    for pooling in ("cls", "max"):
        folder = made[pooling] = _copy(src, tmp_path / pooling)
        write_head(folder, Head(pooling=pooling, linear=linear, activation="tanh", normalize=True), 32)
        loaded = load_hf_model(folder, seq_len=16)
        assert loaded.source["text"]["head"] == {"pooling": pooling, "dense": [32, 48], "activation": "tanh",
                                                 "normalize": True}
        ids, mask, types = loaded.example_inputs
        with torch.no_grad():
            hidden = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            pooled = hidden[:, 0] if pooling == "cls" else hidden[:, : int(mask.sum())].max(1).values
            want = torch.nn.functional.normalize(torch.tanh(linear(pooled)), dim=1)
            got = loaded.model(*loaded.example_inputs)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert abs(float(got.norm()) - 1) < 1e-5
    saved = save_hf(loaded.model, src, tmp_path / "saved")
    again = load_hf_model(saved, seq_len=16)
    assert again.source["text"]["head"] == loaded.source["text"]["head"]
    torch.testing.assert_close(again.model(*loaded.example_inputs), got)
    onnx_path = tmp_path / "head.onnx"
    torch.onnx.export(loaded.model, loaded.example_inputs, str(onnx_path), dynamo=True, external_data=False)
    import onnxruntime as ort

    feed = {name: t.numpy() for name, t in zip(NAMES["bert"], loaded.example_inputs)}
    np.testing.assert_allclose(ort.InferenceSession(str(onnx_path)).run(None, feed)[0], got.numpy(), rtol=1e-4, atol=1e-5)
    assert load_hf_model(src, seq_len=8).source["text"]["head"]["pooling"] == "mean"  # no modules.json

    def modules(folder: Path, edit) -> Path:
        data = json.loads((folder / "modules.json").read_text())
        (folder / "modules.json").write_text(json.dumps(edit(data)))
        return folder

    bad = {
        "unknown": (lambda d: d + [{"idx": 9, "name": "9", "path": "9_X", "type": "sentence_transformers.models.LSTM"}],
                    "uses module 'LSTM'"),
        "subfolder": (lambda d: [{**d[0], "path": "0_Transformer"}, *d[1:]], "Transformer .the folder itself. first"),
        "broken": (lambda d: "[", "cannot be read"),
    }
    for name, (edit, message) in bad.items():
        folder = _copy(made["cls"], tmp_path / f"bad-{name}")
        if name == "broken":
            (folder / "modules.json").write_text("[")
        else:
            modules(folder, edit)
        with pytest.raises(InputError, match=message):
            load_hf_model(folder)
    two = _copy(made["cls"], tmp_path / "two-modes")
    cfg = json.loads((two / "1_Pooling" / "config.json").read_text())
    (two / "1_Pooling" / "config.json").write_text(json.dumps({**cfg, "pooling_mode_mean_tokens": True}))
    with pytest.raises(InputError, match="exactly one of"):
        load_hf_model(two)
    wide = _copy(made["cls"], tmp_path / "wide")
    cfg = json.loads((wide / "2_Dense" / "config.json").read_text())
    (wide / "2_Dense" / "config.json").write_text(json.dumps({**cfg, "in_features": 64}))
    with pytest.raises(InputError, match="takes 64 features but the model's hidden size is 32"):
        load_hf_model(wide)
