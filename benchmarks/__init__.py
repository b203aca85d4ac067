"""Benchmarks of nurture's stages against the bare embedding model; ``make bench`` runs them."""
