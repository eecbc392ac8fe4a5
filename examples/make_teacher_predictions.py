"""Write examples/data/shapes-quick-teacher-probs.npz: a teacher's class probabilities for every sample of the
built-in synthetic-shapes "quick" set, keyed by sample id, as a hosted (black-box) model would return them.

    python examples/make_teacher_predictions.py
"""

from pathlib import Path

import numpy as np
import torch

from edgestill.compress.distill.teacher_cache import train_or_load_teacher
from edgestill.compress.distill.trainer import TrainConfig, predict_logits
from edgestill.data import load_dataset
from edgestill.compress.distill.teacher_outputs import default_cache_dir


def main() -> None:
    torch.set_num_threads(2)
    data = load_dataset("synthetic-shapes", seed=0, size="quick")
    teacher, _ = train_or_load_teacher("resnet-teacher", {"width": 8, "blocks": [1, 1, 1]}, data,
                                       TrainConfig(epochs=6, batch_size=64, lr=0.05), cache_dir=default_cache_dir())
    splits = (data.train, data.val, data.test)
    ids = np.concatenate([s.ids for s in splits])
    probs = torch.softmax(predict_logits(teacher, np.concatenate([s.x for s in splits])), dim=1).numpy()
    out = Path(__file__).parent / "data" / "shapes-quick-teacher-probs.npz"
    np.savez_compressed(out, ids=ids, probabilities=probs.astype(np.float32))
    acc = float((probs[: len(data.train)].argmax(1) == data.train.y).mean())
    print(f"wrote {out} ({len(ids)} samples; teacher train accuracy {acc:.3f})")


if __name__ == "__main__":
    main()
