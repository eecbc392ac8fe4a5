"""Knowledge distillation: losses, the trainer, a teacher cache and the demo's tuned settings."""

from edgestill.compress.distill.losses import LOSSES, ce_loss, kd_loss
from edgestill.compress.distill.presets import DEMO, QUICK, DemoSettings
from edgestill.compress.distill.teacher_cache import teacher_cache_key, train_or_load_teacher
from edgestill.compress.distill.trainer import EpochRecord, TrainConfig, TrainResult, evaluate, predict_logits, train

__all__ = ["DEMO", "LOSSES", "QUICK", "DemoSettings", "EpochRecord", "TrainConfig", "TrainResult", "ce_loss",
           "evaluate", "kd_loss", "predict_logits", "teacher_cache_key", "train", "train_or_load_teacher"]
