"""edgestill.benchmarks."""
