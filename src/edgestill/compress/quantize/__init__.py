"""Static int8 quantization with calibration data, one file per format; ``quantize_export`` is the verb.

Importing this package stays light: torch and the format libraries load inside the quantizers.
"""

from edgestill.compress.quantize.api import QUANTIZERS, get_quantizer, quantize_export
from edgestill.compress.quantize.calibration import calibration_manifest, check_calibration

__all__ = ["QUANTIZERS", "calibration_manifest", "check_calibration", "get_quantizer", "quantize_export"]
