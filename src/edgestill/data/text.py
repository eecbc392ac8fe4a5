"""Text data: a built-in generated intent set (labelled, deterministic by seed), the user's texts from a .txt or a CSV
column, and texts encoded to a text model's named inputs.

The generated set stands in for an intent classifier's data (the demo, the tests, ``perf/text_chain.py``): each class
has its own templates and slot words, with filler words shared by every class, so a two-layer student learns it in a
few epochs while the exact sentence is rarely repeated. Its texts, without labels, are also the default unlabelled
source for embedding distillation.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgestill.errors import InputError, did_you_mean
from edgestill.limits import check_allocation, format_bytes

MAX_TEXT_FILE_BYTES = 256 << 20
"""Largest text or CSV file read (256 MiB): read whole into Python strings (about 10x the bytes as a list of rows), a
distillation set of a million sentences is ~100 MB; past that, split the file."""
TEXT_SUFFIXES = (".txt", ".csv", ".tsv")

# (class name, templates, slot words). "{x}" is a class slot, "{p}" a shared polite opener, "{t}" a shared time phrase.
_INTENTS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("weather",
     ("what is the weather like in {x} {t}", "will it rain in {x} {t}", "how hot will it be in {x} {t}",
      "{p}tell me the forecast for {x}", "is it going to be sunny in {x} {t}", "do i need an umbrella in {x} {t}"),
     ("paris", "london", "berlin", "tokyo", "madrid", "oslo", "rome", "chicago", "the city", "the mountains")),
    ("alarm",
     ("{p}set an alarm for {x} {t}", "wake me up at {x} {t}", "{p}cancel my alarm at {x}",
      "remind me to get up at {x}", "{p}change the alarm to {x} {t}", "turn off the {x} alarm"),
     ("six am", "seven thirty", "eight o'clock", "noon", "five fifteen", "nine pm", "half past six", "ten am")),
    ("music",
     ("{p}play some {x}", "put on {x} music {t}", "i want to listen to {x}", "skip this {x} song",
      "turn up the {x} playlist", "{p}shuffle my {x} songs"),
     ("jazz", "rock", "classical", "hip hop", "piano", "country", "lofi", "metal", "pop", "blues")),
    ("navigation",
     ("{p}take me to {x}", "how do i get to {x} {t}", "{p}give me directions to {x}", "how far is {x} from here",
      "start navigation to {x}", "{p}find the fastest route to {x}"),
     ("the airport", "the station", "work", "the hospital", "downtown", "the museum", "grandma's house", "the beach")),
    ("shopping",
     ("{p}add {x} to my shopping list", "{p}order more {x}", "do we need {x}", "remove {x} from the list",
      "{p}buy {x} {t}", "put {x} in my cart"),
     ("milk", "eggs", "bread", "coffee", "apples", "rice", "batteries", "paper towels", "cheese", "tomatoes")),
    ("timer",
     ("{p}set a timer for {x}", "start a {x} timer", "how much time is left on the {x} timer",
      "count down {x}", "{p}stop the {x} timer", "pause the timer at {x}"),
     ("five minutes", "ten minutes", "one hour", "thirty seconds", "two minutes", "forty five minutes")),
    ("calendar",
     ("what is on my calendar {t}", "{p}schedule a meeting with {x} {t}", "add lunch with {x} to my calendar",
      "move my call with {x}", "when am i meeting {x}", "cancel the meeting with {x} {t}"),
     ("anna", "the team", "my boss", "david", "the doctor", "sarah", "the client", "marco")),
    ("lights",
     ("{p}turn on the lights in the {x}", "dim the {x} lights", "{p}switch off the {x} lamp",
      "make the {x} brighter", "set the {x} lights to blue", "are the lights on in the {x}"),
     ("kitchen", "bedroom", "living room", "hallway", "garage", "office", "bathroom", "garden")),
)
MAX_CLASSES = len(_INTENTS)
_POLITE = ("", "", "please ", "hey ", "can you ", "could you ", "i would like you to ")
_TIMES = ("", "", "today", "tomorrow", "tonight", "this weekend", "right now", "later", "on monday")


@dataclass(frozen=True)
class TextSet:
    """Texts with integer labels (``labels[i]`` indexes ``class_names``)."""

    texts: list[str]
    labels: np.ndarray  # (n,) int64
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def generated_texts(n: int, *, seed: int = 0, num_classes: int = 4) -> TextSet:
    """``n`` templated intent sentences over ``num_classes`` classes (weather, alarm, music, navigation, shopping,
    timer, calendar, lights: the first ``num_classes``), balanced (class sizes differ by at most one), shuffled,
    and the same for the same seed.

    Raises:
        InputError: ``n`` < 1, or ``num_classes`` not in 2..8.
    """
    if not isinstance(n, int) or n < 1:
        raise InputError(f"the generated text set needs n >= 1 texts, got {n!r}.")
    if not isinstance(num_classes, int) or not 2 <= num_classes <= MAX_CLASSES:
        raise InputError(f"the generated text set has 2 to {MAX_CLASSES} classes, got {num_classes!r} "
                         f"({', '.join(c for c, _, _ in _INTENTS)}).")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % num_classes)
    texts = []
    for label in labels:
        _, templates, slots = _INTENTS[label]
        template = templates[rng.integers(len(templates))]
        text = template.format(x=slots[rng.integers(len(slots))], p=_POLITE[rng.integers(len(_POLITE))],
                               t=_TIMES[rng.integers(len(_TIMES))])
        texts.append(" ".join(text.split()))
    return TextSet(texts=texts, labels=labels, class_names=[c for c, _, _ in _INTENTS[:num_classes]])


def read_texts(path: str | os.PathLike[str], *, column: str | None = None) -> list[str]:
    """The texts of a file: one per non-blank line of a .txt file, or one per row of a CSV (.csv, .tsv) column.

    A CSV with one column needs no ``column``; with several, ``column`` names the one to read. Leading and trailing
    whitespace is stripped; blank texts are skipped.

    Raises:
        InputError: the file is missing, a folder, larger than :data:`MAX_TEXT_FILE_BYTES`, not UTF-8 (the message
            names the line and byte offset), holds no text, is a CSV without the column (the message lists the
            columns) or with an unreadable row; ``column`` given for a .txt file.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"text file {p} does not exist. Pass a .txt file (one text per line) or a .csv with a text column.")
    if not p.is_file():
        raise InputError(f"text file {p} is not a file (a folder?). Pass a .txt file (one text per line) or a .csv.")
    table = p.suffix.lower() in (".csv", ".tsv")
    if column is not None and not table:
        raise InputError(f"a column ({column!r}) was named for {p}, which is not a CSV (.csv, .tsv): a text file has one "
                         "text per line. Drop the column, or pass the CSV.")
    size = p.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise InputError(f"text file {p} is {format_bytes(size)}; edgestill reads at most "
                         f"{format_bytes(MAX_TEXT_FILE_BYTES)} of text at once. Split it, or sample from it.")
    check_allocation(10 * size, what=f"the text file {p} ({format_bytes(size)}, read as Python strings)",
                     fix="Split the file, or sample from it.")
    raw = p.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"text file {p} is not UTF-8: byte {exc.start} (line {line}) is 0x{raw[exc.start]:02x}. "
                         "Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT).") from None
    texts = _csv_column(p, content, column) if table else [t.strip() for t in content.splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        what = f"column {column!r}" if table and column else "file"
        raise InputError(f"text file {p} holds no text (its {what} is empty or only blank). Pass a file with one text "
                         "per line, or a CSV whose text column has values.")
    return texts


def _csv_column(p: Path, content: str, column: str | None) -> list[str]:
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    try:
        rows = list(csv.reader(io.StringIO(content, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise InputError(f"CSV file {p} cannot be read as a table ({exc}). Save it as a plain CSV with a header row.") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"CSV file {p} is empty: it needs a header row and one row per text.")
    header = [h.strip() for h in rows[0]]
    if column is None:
        if len(header) != 1:
            raise InputError(f"CSV file {p} has {len(header)} columns ({', '.join(header)}); name the text column "
                             "(--text-column, data.text_column).")
        column = header[0]
    if column not in header:
        raise InputError(f"CSV file {p} has no column {column!r}.{did_you_mean(column, header)} Columns: "
                         f"{', '.join(header)}.")
    index = header.index(column)
    short = next((i + 2 for i, r in enumerate(rows[1:]) if len(r) <= index), None)
    if short is not None:
        raise InputError(f"CSV file {p}: row {short} has no {column!r} cell (fewer cells than the header). Fix the row.")
    return [r[index].strip() for r in rows[1:]]


def encode_texts(tokenizer_file: str | os.PathLike[str], texts: Sequence[str], *, max_length: int,
                 input_names: Sequence[str], truncate: bool = False) -> dict[str, np.ndarray]:
    """Texts → {input name: (n, max_length) int64}, padded to ``max_length``, for the named Hugging Face inputs
    (input_ids, attention_mask, token_type_ids).

    Raises:
        InputError: an unknown input name, a tokenizer file that cannot be read, no texts, or a text longer than
            ``max_length`` tokens while ``truncate`` is off (see :func:`edgestill.runtimes.text.tokenize`).
    """
    from edgestill.runtimes.text import KIND_BY_NAME, load_tokenizer, tokenize

    unknown = [n for n in input_names if n not in KIND_BY_NAME]
    if unknown or not input_names:
        raise InputError(f"text inputs {unknown or 'none'} are not ones a tokenizer fills; valid: {', '.join(KIND_BY_NAME)}.")
    tokens = tokenize(load_tokenizer(tokenizer_file), texts, max_length=max_length, pad_to=max_length, truncate=truncate)
    return {name: tokens.by_kind(KIND_BY_NAME[name]) for name in input_names}
