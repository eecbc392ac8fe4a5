"""Knowledge distillation: loss terms behind a registry, named-layer features, the trainer (checkpoints, resume,
early stopping, seeds, data-parallel), teacher-output caches and the trained-model cache (teacher, no-KD baseline);
Hugging Face text models in :mod:`edgestill.compress.distill.text`.
The demo's settings are the built-in recipe ``demo`` (edgestill.chain)."""

from edgestill.compress.distill.losses import (LOSSES, LossSpec, LossTerm, ce_loss, embedding_loss, kd_loss, loss_names,
                                              parse_terms)
from edgestill.compress.distill.teacher_cache import (ROLES, TrainCacheInfo, train_cache_key, train_or_load,
                                                      train_or_load_teacher)
from edgestill.compress.distill.teacher_outputs import (TeacherOutputs, cached_teacher_outputs, default_cache_dir,
                                                        teacher_fingerprint, teacher_logits_for, teacher_logits_key,
                                                        teacher_outputs_key)
from edgestill.compress.distill.text import (TextDistillConfig, TextDistillResult, TextTrainResult, distill_text,
                                            embedding_metrics, smaller_student, student_from_teacher, train_text)
from edgestill.compress.distill.trainer import (Augment, EpochRecord, SeedStats, TrainConfig, TrainResult,
                                                default_terms, evaluate, predict_logits, seed_list, summarize_seeds,
                                                train, train_generations)

__all__ = ["LOSSES", "ROLES", "Augment", "EpochRecord", "LossSpec", "LossTerm",
           "SeedStats", "TeacherOutputs", "TextDistillConfig", "TextDistillResult", "TextTrainResult", "TrainCacheInfo",
           "TrainConfig", "TrainResult", "cached_teacher_outputs", "ce_loss", "default_cache_dir", "default_terms",
           "distill_text", "embedding_loss", "embedding_metrics", "evaluate", "kd_loss", "loss_names", "parse_terms",
           "predict_logits", "seed_list", "smaller_student", "student_from_teacher", "summarize_seeds",
           "teacher_fingerprint", "teacher_logits_for", "teacher_logits_key", "teacher_outputs_key", "train",
           "train_cache_key", "train_generations", "train_or_load", "train_or_load_teacher", "train_text"]
