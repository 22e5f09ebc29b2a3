"""Storage: feature stores (local, GCS), source records, and reading source files."""
