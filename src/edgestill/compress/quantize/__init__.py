"""edgestill.compress.quantize."""
