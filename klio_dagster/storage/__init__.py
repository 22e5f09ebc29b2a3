"""Storage: feature stores (local, GCS), source records, reading source files, and reading SQL rows fast."""
