"""Built-in datasets with fixed, seeded splits, and loaders for user data (image folders, NPZ, CSV)."""

from edgestill.data.datasets import (
    DATASETS,
    SHAPES_CLASSES,
    DataSplits,
    Split,
    dataset_names,
    generate_shapes,
    load_dataset,
)
from edgestill.data.loaders import IMAGE_SUFFIXES, Augment, DataConfig, load_csv, load_data, load_image_folder, load_npz

__all__ = ["DATASETS", "IMAGE_SUFFIXES", "SHAPES_CLASSES", "Augment", "DataConfig", "DataSplits", "Split", "dataset_names",
           "generate_shapes", "load_csv", "load_data", "load_dataset", "load_image_folder", "load_npz"]
