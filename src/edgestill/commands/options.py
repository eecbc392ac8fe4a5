"""Option types and parsers shared by commands."""

from __future__ import annotations

from edgestill.errors import InputError


def parse_int_list(text: str, *, option: str, minimum: int = 1) -> list[int]:
    """Parse ``"1,2,4"`` into ``[1, 2, 4]``.

    Raises:
        InputError: an item is not a whole number >= ``minimum``.
    """
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [int(t) for t in items]
    except ValueError:
        values = []
    if not values or any(v < minimum for v in values):
        raise InputError(f"{option} takes whole numbers >= {minimum} separated by commas (e.g. 1,2,4); got {text!r}.")
    return values
