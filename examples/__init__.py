"""Reference feature graph, demo catalogue and Klio-migration example."""
