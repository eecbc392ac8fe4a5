"""Built-in datasets with fixed, seeded splits."""

from edgestill.data.datasets import (
    DATASETS,
    SHAPES_CLASSES,
    DataSplits,
    Split,
    dataset_names,
    generate_shapes,
    load_dataset,
)

__all__ = ["DATASETS", "SHAPES_CLASSES", "DataSplits", "Split", "dataset_names", "generate_shapes", "load_dataset"]
