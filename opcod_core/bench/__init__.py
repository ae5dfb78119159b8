"""Benchmarks of the algorithm itself (``opcod bench ...``): the science-world fidelity benchmark."""
