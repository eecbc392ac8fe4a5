"""The stages of a text recipe (``task: text-classify | text-embed``): teacher, distill, export, evaluate.

The engine (:func:`edgestill.chain.run.run_recipe`) runs them in the same order, with the same resumption, report,
checks, bench and results store as an image recipe's. Models travel between stages as Hugging Face folders: the
teacher's (given, or built and trained here and cached by config and data), and the student's, saved under the run's
``checkpoints/student/`` with the teacher's tokenizer. Every artifact keeps that tokenizer beside it.

The held-out test texts score everything: the teacher's outputs on them (logits or embeddings) are saved once, and each
artifact is compared with them on its own runtime (accuracy and teacher agreement for a classifier; mean cosine and
top-k retrieval agreement for an embedder). A text longer than the sequence length is refused (exit 2, naming it)
unless the recipe sets ``distill.truncate: true``; then it is truncated for training and scoring alike.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgestill.chain.recipe import Recipe
from edgestill.chain.text import TextData, hf_task
from edgestill.errors import InputError

Progress = Callable[..., None]
VALIDATION_SAMPLES = 200  # test texts each file is compared with torch on (parity); scoring uses the whole test split
STUDENT_DIR = "checkpoints/student"
TEACHER_OUTPUTS = "checkpoints/teacher-test-outputs.npy"
INFERENCE_BATCH = 64


def seq_len(recipe: Recipe) -> int:
    """The exported (and scored) sequence length: export.max_length, else distill.max_length."""
    te = recipe.text_export
    return te.max_length if te is not None and te.max_length is not None else recipe.distill.max_length


def encode(model_dir: Path, texts: Sequence[str], *, max_length: int, names: Sequence[str],
           truncate: bool) -> list[np.ndarray]:
    """Texts → one (n, max_length) int64 array per input name, in ``names`` order (a longer text is refused, or
    truncated with ``truncate``: the recipe's ``distill.truncate``)."""
    from edgestill.data.text import encode_texts

    with _recipe_hint():
        arrays = encode_texts(Path(model_dir) / "tokenizer.json", texts, max_length=max_length, input_names=names,
                              truncate=truncate)
    return [arrays[n] for n in names]


def predict(model: Any, arrays: Sequence[np.ndarray], batch: int = INFERENCE_BATCH) -> np.ndarray:
    """A wrapped text model's outputs (logits or embeddings) on int64 input arrays, in batches, as float32."""
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(arrays[0]), batch):
            outs.append(model(*(torch.from_numpy(np.ascontiguousarray(a[start:start + batch])) for a in arrays)))
    return torch.cat(outs).float().numpy()


def _load(folder: Path, recipe: Recipe, *, max_length: int, trust: bool = False, **kw: Any) -> Any:
    from edgestill.models.hf import load_hf_model

    return load_hf_model(folder, seq_len=max_length, task=hf_task(recipe.task), trust_checkpoint=trust, **kw)


def _names(loaded: Any) -> list[str]:
    return [s.name for s in loaded.input_shapes]


def _parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _score(recipe: Recipe, outputs: np.ndarray, data: TextData, reference: np.ndarray | None) -> dict[str, Any]:
    """Torch-side scores on the test split: accuracy (classify) or agreement with the teacher's embeddings (embed)."""
    from edgestill.runtimes.accuracy import accuracy_of, embedding_agreement

    if recipe.task == "text-classify":
        return {"test_accuracy": accuracy_of(outputs, data.test.labels).value}
    if reference is None:
        return {"test_accuracy": None}
    agree = embedding_agreement(outputs, reference)
    return {"test_accuracy": None, "teacher_cosine": round(agree.mean_cosine, 6),
            "teacher_retrieval_agreement": agree.retrieval_agreement, "retrieval_k": agree.k}


# --- teacher -----------------------------------------------------------------------------------------------------


def teacher_stage(recipe: Recipe, data: TextData, log: Any, progress: Any, *, cache_dir: Path,
                  train_threads: int = 2) -> tuple[Path, dict[str, Any]]:
    """(the teacher's Hugging Face folder, info for the report): the recipe's folder, or one built from
    ``hf_config`` with a tokenizer trained on the training texts, trained here (classify) and cached by config and data."""
    t = recipe.teacher
    if t.hf is not None:
        folder, info = Path(t.hf), {"source": "hf", "path": str(t.hf)}
    else:
        arch = t.hf_config.to_dict()
        d = recipe.distill  # the teacher is fine-tuned with the distill section's sequence length and optimiser
        schedule = {k: getattr(d, k) for k in ("max_length", "truncate", "weight_decay", "warmup_fraction")}
        key = hashlib.sha256(json.dumps({"arch": arch, "train": None if t.train is None else dataclasses.asdict(t.train),
                                         "schedule": schedule, "task": recipe.task, "data": data.sha256, "v": 1},
                                        sort_keys=True).encode()).hexdigest()[:24]
        folder = Path(cache_dir) / "text-teachers" / key
        info = {"source": "hf_config", "model": f"{arch['family']} {arch['layers']}x{arch['hidden']}", "kwargs": arch,
                "trained_epochs": None if t.train is None else t.train.epochs}
        if (folder / "config.json").is_file():
            info["cache"] = "hit"
        else:
            log(f"building the teacher from hf_config ({arch}) and training it" if t.train else
                f"building the teacher from hf_config ({arch}), untrained")
            _build_teacher(recipe, data, folder, progress, train_threads=train_threads)
            info["cache"] = "miss"
    loaded = _load(folder, recipe, max_length=seq_len(recipe), trust=t.trust_checkpoint)
    info.update(family=loaded.source.get("family"), parameters=_parameters(loaded.model), macs=None)
    if recipe.task == "text-classify":
        outputs = predict(loaded.model, encode(folder, data.test.texts, max_length=seq_len(recipe), names=_names(loaded),
                                                 truncate=recipe.distill.truncate))
        info.update(_score(recipe, outputs, data, None))
    return folder, info


def _train_config(recipe: Recipe, task: str, **overrides: Any) -> Any:
    """The distill section's config for ``task`` with ``overrides`` (the teacher's own schedule)."""
    return dataclasses.replace(recipe.distill, task=task, **overrides)


def _build_teacher(recipe: Recipe, data: TextData, folder: Path, progress: Any, *, train_threads: int) -> None:
    """Write the teacher's folder from hf_config (random weights, tokenizer trained on the training texts), fine-tuned
    on the labelled training texts for classify; published by renaming, so the cache holds whole folders only."""
    from edgestill.compress.distill.text import train_text
    from edgestill.models.hf import make_tiny_hf

    t = recipe.teacher
    arch = t.hf_config.to_dict()
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".teacher-", dir=folder.parent))
    try:
        init = make_tiny_hf(work / "init", task=hf_task(recipe.task), family=arch["family"], layers=arch["layers"],
                            hidden=arch["hidden"], heads=arch["heads"], intermediate=arch["intermediate"],
                            num_labels=max(data.num_classes, 2), max_position=arch["max_position"],
                            seed=t.train.seed if t.train else 0, texts=data.train.texts)
        final = init
        if recipe.task == "text-classify":
            _label_names(init, data.class_names)
            cfg = _train_config(recipe, "classify", epochs=t.train.epochs, lr=t.train.lr, batch_size=t.train.batch_size,
                                seed=t.train.seed, train_threads=train_threads)
            with _recipe_hint():
                final = train_text(init, data.train.texts, data.train.labels, cfg, work,
                                   progress=_progress(progress)).model_dir
        try:
            final.rename(folder)
        except OSError:  # another run cached the same teacher meanwhile: keep theirs
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _recipe_hint() -> Iterator[None]:
    """Say how a recipe asks for truncation when a text is longer than the sequence length."""
    try:
        yield
    except InputError as exc:
        if "tokens long" in str(exc):
            raise InputError(f"{exc} In a recipe: distill.truncate: true, or a larger distill.max_length (at most the "
                             "model's maximum).") from None
        raise


def _progress(progress: Any) -> Any:
    """The trainer's progress(epoch, step, total, loss) as the engine's train progress (accuracy not known: NaN)."""
    if progress is None:
        return None
    return lambda epoch, step, total, loss: progress(epoch, step, total, loss, float("nan"))


def _label_names(folder: Path, names: Sequence[str]) -> None:
    """Write the data's class names into a fresh model's config.json (id2label/label2id)."""
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg["id2label"] = {str(i): n for i, n in enumerate(names)}
    cfg["label2id"] = {n: i for i, n in enumerate(names)}
    cfg_file.write_text(json.dumps(cfg, indent=2), encoding="utf-8")


def teacher_outputs(recipe: Recipe, teacher_dir: Path, data: TextData) -> np.ndarray:
    """The teacher's logits or embeddings on the test texts, at the exported sequence length."""
    loaded = _load(teacher_dir, recipe, max_length=seq_len(recipe), trust=recipe.teacher.trust_checkpoint)
    return predict(loaded.model, encode(teacher_dir, data.test.texts, max_length=seq_len(recipe), names=_names(loaded),
                                            truncate=recipe.distill.truncate))


# --- distill -----------------------------------------------------------------------------------------------------


def distill_stage(recipe: Recipe, data: TextData, teacher_dir: Path, reference: np.ndarray, out: Path, log: Any,
                  progress: Any, *, train_threads: int = 2) -> tuple[Path, dict[str, Any]]:
    """Make the student (from the teacher's layers, a folder, or configured smaller), distil it on the training texts
    (:func:`edgestill.compress.distill.text.distill_text`) and save it as ``out/checkpoints/student``.

    Returns:
        (the student's folder, info for the report: parameters, test accuracy or embedding agreement, history).
    """
    from edgestill.compress.distill.text import distill_text, smaller_student, student_from_teacher

    s = recipe.student
    ckpt = out / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    # a fresh name each time (never a fixed one that a planted link or an older folder could hold); an interrupted
    # run's leftover is inside this run's claimed folder, which the engine empties of what it wrote
    work = Path(tempfile.mkdtemp(prefix=".student-work-", dir=ckpt))
    if s.from_teacher is not None:
        init = student_from_teacher(teacher_dir, work, layers=s.from_teacher)
    elif s.hf is not None:
        init = Path(s.hf)
    else:
        init = smaller_student(teacher_dir, work, layers=s.layers, hidden=s.hidden, heads=s.heads,
                               intermediate=s.intermediate, seed=recipe.distill.seed)
    log(f"distilling the student ({s.describe}) for {recipe.distill.epochs} epoch(s)")
    classify = recipe.task == "text-classify"
    cfg = dataclasses.replace(recipe.distill, train_threads=train_threads)
    with _recipe_hint():
        result = distill_text(teacher_dir, init, data.train.texts, cfg, work,
                              labels=data.train.labels if classify else None, progress=_progress(progress))
    final = ckpt / "student"
    if final.is_symlink() or final.is_file():
        final.unlink()  # never follow a link: only the link itself goes
    elif final.exists():
        shutil.rmtree(final)  # the student an earlier run of this recipe wrote here
    Path(result.student_dir).rename(final)
    shutil.rmtree(work, ignore_errors=True)
    loaded = _load(final, recipe, max_length=seq_len(recipe))
    outputs = predict(loaded.model, encode(final, data.test.texts, max_length=seq_len(recipe), names=_names(loaded),
                                           truncate=recipe.distill.truncate))
    from edgestill.artifact import sha256_file

    info: dict[str, Any] = {
        "model": s.describe, "kwargs": {}, "family": loaded.source.get("family"),
        "parameters": _parameters(loaded.model), "macs": None, "epochs_run": result.epochs,
        "losses": _losses(cfg), "best_val_accuracy": None, "best_epoch": result.epochs, "stopped_early": False,
        "teacher_mode": "cached", "resumed_from_epoch": None,
        "history": [{"epoch": i + 1, "train_loss": loss} for i, loss in enumerate(result.history)],
        "checkpoint": STUDENT_DIR, "sha256": sha256_file(final / "model.safetensors"),
        **_score(recipe, outputs, data, reference),
    }
    if classify:
        from edgestill.runtimes.accuracy import teacher_agreement

        agree, kl = teacher_agreement(outputs, reference)
        info.update(teacher_top1_agreement=agree, teacher_kl=round(kl, 6))
    return final, info


def _losses(cfg: Any) -> list[dict[str, Any]]:
    """The loss terms and weights, as the report lists them (kd/ce for a classifier, mse/cosine for an embedder)."""
    if cfg.task == "classify":
        return [{"name": "kd", "weight": round(1 - cfg.alpha, 6), "options": {"temperature": cfg.temperature}},
                {"name": "ce", "weight": cfg.alpha, "options": {}}]
    return [{"name": "mse", "weight": cfg.mse_weight, "options": {}},
            {"name": "cosine", "weight": cfg.cosine_weight, "options": {}}]


# --- export and evaluate -----------------------------------------------------------------------------------------


def export_stage(recipe: Recipe, data: TextData, student_dir: Path, out: Path, progress: Progress) -> list[dict[str, Any]]:
    """Every format x precision of the export section for the student's folder, at the recipe's sequence length:
    named integer inputs, the tokenizer kept beside each file, floats validated against torch on held-out texts
    (logits and top-1 for a classifier, cosine for an embedder), int8 through the quantize budget. One row per cell."""
    from edgestill.chain.convert import convert
    from edgestill.chain.stages import export_rows
    from edgestill.compress.quantize.calibration import select_calibration
    from edgestill.models.loading import input_specs

    dynamic = bool(recipe.text_export and recipe.text_export.dynamic_length)
    spec = dataclasses.replace(recipe.export, strict=False)
    loaded = _load(student_dir, recipe, max_length=seq_len(recipe), dynamic_seq=dynamic,
                   dynamic_batch=spec.dynamic_batch)
    names = _names(loaded)
    spec = dataclasses.replace(spec, inputs=input_specs(loaded.input_shapes), embedding=recipe.task == "text-embed")
    art_dir = out / "artifacts"
    if art_dir.exists():
        shutil.rmtree(art_dir)  # this run's folder (claimed by the engine): the artifacts of an older recipe go

    def arrays(texts: Sequence[str]) -> list[np.ndarray]:
        return encode(student_dir, texts, max_length=seq_len(recipe), names=names, truncate=recipe.distill.truncate)

    calib = select_calibration(len(data.train), labels=data.train.labels, n=recipe.quantize.calibration_samples,
                               seed=recipe.distill.seed)
    classify = recipe.task == "text-classify"
    results = convert(loaded.model, loaded.example_inputs, export=spec, quantize=recipe.quantize, out_dir=art_dir,
                      validation_inputs=arrays(data.test.texts[:VALIDATION_SAMPLES]),
                      calibration=arrays([data.train.texts[i] for i in calib]),
                      calibration_ids=[f"train[{i}]" for i in calib], eval_x=arrays(data.test.texts),
                      eval_y=data.test.labels if classify else None,
                      source={**loaded.source, "student": recipe.student.describe, "recipe": recipe.name},
                      progress=lambda i, n, label="": progress(i, n, label))
    return export_rows(results, out)


def evaluate_stage(recipe: Recipe, rows: list[dict[str, Any]], data: TextData, out: Path, student_info: dict[str, Any],
                   reference: np.ndarray | None, progress: Progress) -> None:
    """Score every published artifact on its own runtime over the test texts (in place on ``rows``): a classifier's
    test accuracy (and drop vs the torch student), top-1 agreement and KL with the teacher; an embedder's mean cosine
    and top-k retrieval agreement with the teacher's embeddings (its accuracy and top-1 agreement stay None: an
    embedding has no classes). Each file reads the raw test texts through the tokenizer kept beside it
    (:class:`edgestill.runtimes.text.TextEncoder`), as a user's raw text would be."""
    from edgestill.runtimes import RuntimeOptions, load
    from edgestill.runtimes.accuracy import accuracy_of, embedding_agreement, session_outputs, teacher_agreement
    from edgestill.runtimes.text import TextEncoder

    todo = [r for r in rows if r["passed"]]
    for i, row in enumerate(todo):
        progress(i, len(todo), row["artifact"])
        session = load(out / row["manifest"], RuntimeOptions(threads=1))
        with _recipe_hint():
            inputs = TextEncoder.for_artifact(session.artifact).encode(data.test.texts, truncate=recipe.distill.truncate)
        outputs = session_outputs(session, inputs)
        row.update(runtime=session.runtime, n_test=len(data.test))
        if recipe.task == "text-classify":
            acc = accuracy_of(outputs, data.test.labels).value
            row.update(test_accuracy=acc, accuracy_drop_points=round(100 * (student_info["test_accuracy"] - acc), 2))
            agree, kl = teacher_agreement(outputs, reference) if reference is not None else (None, None)
            row.update(teacher_top1_agreement=agree, teacher_kl=None if kl is None else round(kl, 6))
        else:
            row.update(test_accuracy=None, accuracy_drop_points=None, teacher_top1_agreement=None, teacher_kl=None,
                       agreement_note="an embedder has no classes: its agreement with the teacher is the mean cosine "
                                      "and the top-k retrieval agreement")
            if reference is not None:
                agree = embedding_agreement(outputs, reference)
                row.update(teacher_cosine=round(agree.mean_cosine, 6),
                           teacher_retrieval_agreement=agree.retrieval_agreement, retrieval_k=agree.k)
    progress(len(todo), len(todo), "done")
