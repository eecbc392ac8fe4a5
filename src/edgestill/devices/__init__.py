"""edgestill.devices."""
