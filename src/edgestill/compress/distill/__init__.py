"""Knowledge distillation: loss terms behind a registry, named-layer features, the trainer (checkpoints, resume,
early stopping, seeds, data-parallel), teacher caches and the demo's tuned settings."""

from edgestill.compress.distill.losses import LOSSES, LossSpec, LossTerm, ce_loss, kd_loss, loss_names, parse_terms
from edgestill.compress.distill.presets import DEMO, QUICK, DemoSettings
from edgestill.compress.distill.teacher_cache import (TeacherOutputs, cached_teacher_outputs, teacher_cache_key,
                                                      teacher_fingerprint, teacher_outputs_key, train_or_load_teacher)
from edgestill.compress.distill.trainer import (Augment, EpochRecord, SeedStats, TrainConfig, TrainResult,
                                                default_terms, evaluate, predict_logits, seed_list, summarize_seeds,
                                                train, train_generations)

__all__ = ["DEMO", "LOSSES", "QUICK", "Augment", "DemoSettings", "EpochRecord", "LossSpec", "LossTerm", "SeedStats",
           "TeacherOutputs", "TrainConfig", "TrainResult", "cached_teacher_outputs", "ce_loss", "default_terms",
           "evaluate", "kd_loss", "loss_names", "parse_terms", "predict_logits", "seed_list", "summarize_seeds",
           "teacher_cache_key", "teacher_fingerprint", "teacher_outputs_key", "train", "train_generations",
           "train_or_load_teacher"]
