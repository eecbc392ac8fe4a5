"""edgestill.compress."""
