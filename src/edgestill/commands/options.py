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


# The int8 options `edgestill quantize` and `edgestill export` share: one definition, so the two commands take
# the same flags with the same help (issue 17: export and quantize are one path).
def _quant_flags() -> dict:
    import typer

    from edgestill.compress.quantize.options import CALIBRATION_METHODS, TFLITE_RECIPES

    return {
        "calibration_method": typer.Option(
            None, "--calibration-method",
            help=f"How int8 activation ranges are set: {', '.join(CALIBRATION_METHODS)} ('auto' tries them on a held-out "
                 "part of the calibration data and keeps the best); default: the format's measured default."),
        "tflite_recipe": typer.Option(None, "--tflite-recipe", help=f"TFLite int8 route: {', '.join(TFLITE_RECIPES)}."),
        "equalize": typer.Option(None, "--equalize/--no-equalize",
                                 help="Cross-layer equalisation before int8 (default: the format's measured default)."),
        "bias_correction": typer.Option(None, "--bias-correction/--no-bias-correction",
                                        help="Correct the bias shift int8 weights cause (default: the format's measured default)."),
        "integer_io": typer.Option(False, "--integer-io/--float-io",
                                   help="int8 input/output tensors (fully integer file) instead of float I/O (the default)."),
    }


QUANT_FLAGS = _quant_flags()


def quant_options(*, calibration_method: str | None, tflite_recipe: str | None, equalize: bool | None,
                  bias_correction: bool | None, integer_io: bool, float_layers: tuple[str, ...] = ()) -> object:
    """A QuantOptions from the shared int8 flags; a flag left unset keeps the QuantOptions default.

    Raises:
        ConfigError: an unknown method or recipe (the message lists the choices).
    """
    from edgestill.compress.quantize.options import QuantOptions

    given = {"calibration_method": calibration_method, "tflite_recipe": tflite_recipe, "equalize": equalize,
             "bias_correction": bias_correction}
    return QuantOptions(**{k: v for k, v in given.items() if v is not None}, integer_io=integer_io, float_layers=float_layers)
