"""Property-based tests (hypothesis): recipe parsing, manifest loading, the I/O contract and the statistics."""
