"""Helpers the property tests share."""

from __future__ import annotations

from typing import Any


def key_paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and list indices) into a nested dict/list document, the document itself excluded."""
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += key_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += key_paths(v, (*prefix, i))
    return out
