"""The offline top-k logit cache: what it stores, that it is reused, and that a wrong or damaged cache is refused."""

import json

import numpy as np
import pytest
import torch

from edgestill.compress.distill.llm_cache import (TopKCache, build_topk_cache, build_topk_cache_from_folder,
                                                  corpus_sha256, tokenizer_sha256)
from edgestill.errors import ConfigError, InputError

VOCAB = 40


def tiny_llama(seed: int = 0, *, vocab: int = VOCAB, hidden: int = 32, layers: int = 1):
    """A seeded random LlamaForCausalLM small enough for a unit test (bos 1, eos 2, pad 0)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def sequences(n: int = 10, seed: int = 0, vocab: int = VOCAB) -> list[list[int]]:
    """n sequences of 6 to 17 ids: bos, random tokens, eos."""
    rng = np.random.default_rng(seed)
    return [[1, *rng.integers(3, vocab, size=int(rng.integers(4, 16))).tolist(), 2] for _ in range(n)]


@pytest.fixture(scope="module")
def teacher():
    return tiny_llama(0)


@pytest.fixture(scope="module")
def seqs():
    return sequences()


@pytest.fixture(scope="module")
def built(teacher, seqs, tmp_path_factory):
    return build_topk_cache(teacher, seqs, k=5, path=tmp_path_factory.mktemp("c") / "cache", batch_size=3,
                            tokenizer_sha256="tok-a")


def test_cache_holds_each_next_token_top_k_and_the_rest(built, teacher, seqs):
    assert built.k == 5 and built.vocab == VOCAB and built.n_sequences == len(seqs)
    assert built.values.dtype == np.float16 and built.indices.dtype == np.uint16
    assert isinstance(built.values, np.memmap)
    for i in (0, 4, 9):
        seq = seqs[i]
        assert built.sequence(i).tolist() == seq
        with torch.no_grad():
            logits = teacher(input_ids=torch.tensor([seq])).logits[0, :-1].float()
        values, indices, rest = built.rows(i, len(seq) - 1)
        top = logits.topk(5, -1)
        assert np.array_equal(indices.astype(np.int64), top.indices.numpy())
        np.testing.assert_allclose(values.astype(np.float32), top.values.numpy(), rtol=1e-3, atol=1e-3)
        other = logits.scatter(-1, top.indices, float("-inf")).logsumexp(-1)
        np.testing.assert_allclose(rest, other.numpy(), rtol=1e-5, atol=1e-5)
    h = built.header
    assert h["rows"] == sum(len(s) - 1 for s in seqs) and h["tokens"] == sum(len(s) for s in seqs)
    assert h["corpus_sha256"] == corpus_sha256(seqs) and h["tokenizer_sha256"] == "tok-a"
    assert built.size_bytes == sum((built.path / f"{n}.npy").stat().st_size
                                   for n in ("values", "indices", "rest", "tokens", "offsets"))


def test_same_inputs_reuse_the_cache_without_running_the_teacher(built, teacher, seqs):
    calls = []
    hook = teacher.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = build_topk_cache(teacher, seqs, k=5, path=built.path, tokenizer_sha256="tok-a")
    finally:
        hook.remove()
    assert calls == [] and again.header == built.header


def test_a_cache_for_another_teacher_tokenizer_or_corpus_is_refused(built, teacher, seqs):
    with pytest.raises(InputError, match="teacher_sha256"):
        build_topk_cache(tiny_llama(1), seqs, k=5, path=built.path, tokenizer_sha256="tok-a")
    with pytest.raises(InputError, match="corpus_sha256"):
        build_topk_cache(teacher, sequences(seed=1), k=5, path=built.path, tokenizer_sha256="tok-a")
    with pytest.raises(InputError, match="tokenizer_sha256"):
        TopKCache.open(built.path, expect={"tokenizer_sha256": "tok-b"})
    with pytest.raises(InputError, match="built for k 5"):
        build_topk_cache(teacher, seqs, k=4, path=built.path, tokenizer_sha256="tok-a")
    with pytest.raises(ConfigError, match="cannot check"):
        TopKCache.open(built.path, expect={"colour": "red"})


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_truncated_changed_missing_or_garbled_files_are_refused(built, tmp_path):
    cut = _copy(built.path, tmp_path / "cut")
    data = (cut / "values.npy").read_bytes()
    (cut / "values.npy").write_bytes(data[:-7])
    with pytest.raises(InputError, match="truncated"):
        TopKCache.open(cut)

    flipped = _copy(built.path, tmp_path / "flipped")
    data = bytearray((flipped / "indices.npy").read_bytes())
    data[-1] ^= 0xFF
    (flipped / "indices.npy").write_bytes(bytes(data))
    TopKCache.open(flipped)  # same size: only the sha256 check sees it
    with pytest.raises(InputError, match="changed"):
        TopKCache.open(flipped, verify=True)

    missing = _copy(built.path, tmp_path / "missing")
    (missing / "rest.npy").unlink()
    with pytest.raises(InputError, match="missing"):
        TopKCache.open(missing)

    garbled = _copy(built.path, tmp_path / "garbled")
    (garbled / "header.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        TopKCache.open(garbled)

    lying = _copy(built.path, tmp_path / "lying")
    header = json.loads((lying / "header.json").read_text())
    header["k"] = 6
    (lying / "header.json").write_text(json.dumps(header))
    with pytest.raises(InputError, match="values.npy is float16"):
        TopKCache.open(lying)

    with pytest.raises(InputError, match="no header.json"):
        TopKCache.open(tmp_path)


def test_bad_build_inputs_are_refused(teacher, tmp_path):
    with pytest.raises(InputError, match="no sequences"):
        build_topk_cache(teacher, [], k=4, path=tmp_path / "a")
    with pytest.raises(InputError, match="at least 2"):
        build_topk_cache(teacher, [[1, 5, 2], [7]], k=4, path=tmp_path / "a")
    with pytest.raises(InputError, match="outside the teacher's vocabulary"):
        build_topk_cache(teacher, [[1, VOCAB, 2]], k=4, path=tmp_path / "a")
    for k in (0, VOCAB + 1, 2.5, True):
        with pytest.raises(ConfigError, match="k must be"):
            build_topk_cache(teacher, [[1, 5, 2]], k=k, path=tmp_path / "a")
    with pytest.raises(ConfigError, match="batch_size"):
        build_topk_cache(teacher, [[1, 5, 2]], k=4, path=tmp_path / "a", batch_size=0)
    (tmp_path / "taken").mkdir()
    with pytest.raises(InputError, match="not a top-k cache"):
        build_topk_cache(teacher, [[1, 5, 2]], k=4, path=tmp_path / "taken")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written left behind


def test_a_large_vocabulary_stores_int32_ids_and_k_equal_to_vocab_has_no_rest(tmp_path):
    big = tiny_llama(0, vocab=70000, hidden=8)
    cache = build_topk_cache(big, [[1, 69999, 2]], k=3, path=tmp_path / "big")
    assert cache.indices.dtype == np.int32 and cache.tokens.dtype == np.int32
    assert 69999 in cache.tokens.tolist()
    full = build_topk_cache(tiny_llama(0), [[1, 5, 2]], k=VOCAB, path=tmp_path / "full")
    assert np.all(np.isneginf(full.rest))


def test_progress_reports_each_batch(teacher, seqs, tmp_path):
    calls = []
    build_topk_cache(teacher, seqs, k=2, path=tmp_path / "p", batch_size=4, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(4, 10), (8, 10), (10, 10)]


def test_a_teacher_folder_records_its_tokenizer_and_a_student_with_another_is_refused(tmp_path):
    from edgestill.models.llm import make_tiny_llama

    teacher_dir = make_tiny_llama(tmp_path / "teacher", layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32)
    same = make_tiny_llama(tmp_path / "same", layers=1, hidden=16, heads=2, kv_heads=1, intermediate=32,
                           tokenizer_dir=teacher_dir)
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer.json").write_text((teacher_dir / "tokenizer.json").read_text().replace('"<unk>"', '"<UNK>"'))
    cache = build_topk_cache_from_folder(teacher_dir, [[1, 5, 6, 2]], k=3, path=tmp_path / "cache")
    assert cache.header["tokenizer_sha256"] == tokenizer_sha256(teacher_dir)
    TopKCache.open(cache.path, expect={"tokenizer_sha256": tokenizer_sha256(same)})
    with pytest.raises(InputError, match="tokenizer_sha256"):
        TopKCache.open(cache.path, expect={"tokenizer_sha256": tokenizer_sha256(other)})
    with pytest.raises(InputError, match="no tokenizer.json"):
        tokenizer_sha256(tmp_path / "cache")


def test_replace_rebuilds_a_cache_of_other_inputs(teacher, seqs, tmp_path):
    first = build_topk_cache(teacher, seqs, k=3, path=tmp_path / "cache")
    second = build_topk_cache(teacher, seqs[:4], k=2, path=tmp_path / "cache", replace=True)
    assert second.n_sequences == 4 and second.k == 2 and first.path == second.path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
