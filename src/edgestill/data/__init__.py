"""Built-in datasets with fixed, seeded splits, loaders for user data (image folders, NPZ, CSV), and text data."""

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
from edgestill.data.text import TextSet, encode_texts, generated_texts, read_texts

__all__ = ["DATASETS", "IMAGE_SUFFIXES", "SHAPES_CLASSES", "Augment", "DataConfig", "DataSplits", "Split", "TextSet",
           "dataset_names", "encode_texts", "generate_shapes", "generated_texts", "load_csv", "load_data", "load_dataset",
           "load_image_folder", "load_npz", "read_texts"]
