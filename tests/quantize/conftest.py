"""Fixtures shared by the quantization tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's bundled handwritten digits (8×8, 1 channel), split by the built-in loader."""
    from edgestill.data import load_dataset

    return load_dataset("digits")
