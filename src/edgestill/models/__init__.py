"""Built-in model architectures behind one registry: create_model(name, num_classes=..., **options)."""

from edgestill.models.builtin import MODELS, count_parameters, create_model, model_names

__all__ = ["MODELS", "count_parameters", "create_model", "model_names"]
