"""edgestill: distill a compact student from a teacher, quantize it, export it and measure it per device."""

__version__ = "0.1.0"
