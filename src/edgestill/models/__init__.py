"""Built-in model architectures behind one registry: create_model(name, num_classes=..., **options).

Importing this package registers the small built-in models (builtin.py) and the standard zoo (zoo.py).
"""

from edgestill.models.builtin import MODELS, count_parameters, create_model, model_names
from edgestill.models.zoo import (
    ZOO,
    InputSpec,
    default_num_classes,
    example_input,
    reference_costs,
    sample_inputs,
    standard_input,
)

__all__ = [
    "MODELS", "ZOO", "InputSpec", "count_parameters", "create_model", "default_num_classes", "example_input",
    "model_names", "reference_costs", "sample_inputs", "standard_input",
]
