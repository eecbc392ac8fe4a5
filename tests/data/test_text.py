"""data/text.py: the generated intent set, reading texts from .txt/.csv, encoding texts; every bad file → InputError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgestill.data.text import MAX_CLASSES, encode_texts, generated_texts, read_texts
from edgestill.errors import InputError

pytest.importorskip("tokenizers")


def test_generated_texts_are_deterministic_balanced_and_labelled() -> None:
    """Same seed, same set; another seed, another order; classes balanced to within one; n and num_classes out of range
    refused."""
    a, b, c = generated_texts(203, seed=1), generated_texts(203, seed=1), generated_texts(203, seed=2)
    assert a.texts == b.texts and np.array_equal(a.labels, b.labels)
    assert a.texts != c.texts
    assert a.labels.dtype == np.int64 and len(a) == 203 and a.class_names == ["weather", "alarm", "music", "navigation"]
    counts = np.bincount(a.labels, minlength=4)
    assert counts.max() - counts.min() <= 1
    assert len(set(a.texts)) > 150  # slots, openers and times vary the sentences
    eight = generated_texts(80, num_classes=MAX_CLASSES)
    assert len(eight.class_names) == 8 and set(eight.labels.tolist()) == set(range(8))
    for bad in ({"n": 0}, {"n": 10, "num_classes": 1}, {"n": 10, "num_classes": 9}):
        with pytest.raises(InputError, match="generated text set"):
            generated_texts(**bad)


def test_generated_texts_are_learnable_from_words() -> None:
    """A bag-of-words nearest-class rule, fitted on one seed, labels another seed's texts almost perfectly: the classes
    are told apart by their words (what a two-layer student must pick up)."""
    train, test = generated_texts(800, seed=0, num_classes=8), generated_texts(400, seed=1, num_classes=8)
    votes: dict[str, np.ndarray] = {}
    for text, label in zip(train.texts, train.labels):
        for word in set(text.split()):
            votes.setdefault(word, np.zeros(8))[label] += 1
    scores = [sum((votes.get(w, np.zeros(8)) / max(votes.get(w, np.ones(8)).sum(), 1)) for w in set(t.split()))
              for t in test.texts]
    accuracy = float(np.mean(np.argmax(scores, axis=1) == test.labels))
    assert accuracy > 0.95


def test_read_texts_txt_and_csv(tmp_path: Path) -> None:
    """Lines (blank ones skipped, whitespace and a BOM stripped), a named CSV column with quoted commas and newlines, a
    one-column CSV without a name, a TSV."""
    txt = tmp_path / "t.txt"
    txt.write_text("\ufeffhello world\n\n  second line  \r\nthird\n", encoding="utf-8")
    assert read_texts(txt) == ["hello world", "second line", "third"]
    csv = tmp_path / "t.csv"
    csv.write_text('id,text,label\n1,"hi, there",a\n2,"two\nlines",b\n3,,c\n', encoding="utf-8")
    assert read_texts(csv, column="text") == ["hi, there", "two\nlines"]
    one = tmp_path / "one.csv"
    one.write_text("sentence\nfirst\nsecond\n", encoding="utf-8")
    assert read_texts(one) == ["first", "second"]
    tsv = tmp_path / "t.tsv"
    tsv.write_text("a\tb\nx, y\tz\n", encoding="utf-8")
    assert read_texts(tsv, column="a") == ["x, y"]


def test_read_texts_refuses_bad_files(tmp_path: Path) -> None:
    """A missing file, a folder, an empty file, a file of blank lines, Latin-1 bytes (line and byte named), a CSV
    without the column (columns listed, closest suggested), a CSV of several columns with none named, an empty CSV
    column, a short row, a column named for a .txt."""
    with pytest.raises(InputError, match="does not exist"):
        read_texts(tmp_path / "none.txt")
    with pytest.raises(InputError, match="not a file"):
        read_texts(tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="holds no text"):
        read_texts(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    with pytest.raises(InputError, match="holds no text"):
        read_texts(blank)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("first\ncaf\xe9 au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"not UTF-8: byte 9 \(line 2\) is 0xe9"):
        read_texts(latin)
    csv = tmp_path / "t.csv"
    csv.write_text("id,sentence\n1,hello\n")
    with pytest.raises(InputError, match=r"no column 'sentense'. Did you mean 'sentence'\? Columns: id, sentence"):
        read_texts(csv, column="sentense")
    with pytest.raises(InputError, match="has 2 columns"):
        read_texts(csv)
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("id,text\n1,\n2, \n")
    with pytest.raises(InputError, match="column 'text' is empty"):
        read_texts(nothing, column="text")
    short = tmp_path / "short.csv"
    short.write_text("id,text\n1,ok\n2\n")
    with pytest.raises(InputError, match="row 3 has no 'text' cell"):
        read_texts(short, column="text")
    with pytest.raises(InputError, match="not a CSV"):
        read_texts(tmp_path / "latin.txt", column="text")


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgestill.models.hf import train_tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(generated_texts(500, num_classes=8).texts).save(str(path))
    return path


def test_encode_texts_pads_to_max_length(tokenizer_file: Path) -> None:
    """Every named input padded to max_length (int64), the mask 1 over the tokens, type ids 0, [CLS] first; an unknown
    input name, no texts and a text longer than the maximum are refused; truncation keeps the maximum."""
    out = encode_texts(tokenizer_file, ["play some jazz", "set an alarm for six am tomorrow"], max_length=12,
                       input_names=["input_ids", "attention_mask", "token_type_ids"])
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(a.shape == (2, 12) and a.dtype == np.int64 for a in out.values())
    assert out["attention_mask"].sum(1).tolist() == [5, 9]  # [CLS] play some jazz [SEP]
    assert out["input_ids"][0, 0] == out["input_ids"][1, 0] != 0 and (out["input_ids"][0, 5:] == 0).all()
    assert not out["token_type_ids"].any()
    only = encode_texts(tokenizer_file, ["play jazz"], max_length=4, input_names=["input_ids"])
    assert list(only) == ["input_ids"]
    with pytest.raises(InputError, match="not ones a tokenizer fills"):
        encode_texts(tokenizer_file, ["hi"], max_length=8, input_names=["pixel_values"])
    with pytest.raises(InputError, match="no texts"):
        encode_texts(tokenizer_file, [], max_length=8, input_names=["input_ids"])
    long = "set an alarm for six am tomorrow please and then play some jazz"
    with pytest.raises(InputError, match=r"text 1 \('set an alarm.*is \d+ tokens long.*at most 8"):
        encode_texts(tokenizer_file, ["hi", long], max_length=8, input_names=["input_ids"])
    cut = encode_texts(tokenizer_file, [long], max_length=8, input_names=["input_ids", "attention_mask"], truncate=True)
    assert cut["attention_mask"].sum() == 8 and cut["input_ids"][0, -1] == out["input_ids"][0, 4]  # ends with [SEP]


def test_read_texts_refuses_a_file_past_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text file larger than MAX_TEXT_FILE_BYTES is refused before it is read, naming the limit."""
    import edgestill.data.text as text

    big = tmp_path / "big.csv"
    big.write_text("text\n" + "hello world\n" * 200)
    monkeypatch.setattr(text, "MAX_TEXT_FILE_BYTES", 1024)
    with pytest.raises(InputError, match=r"reads at most 1(\.0)? KiB"):
        read_texts(big, column="text")
