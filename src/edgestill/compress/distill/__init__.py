"""edgestill.compress.distill."""
