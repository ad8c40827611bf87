"""Benchmarks (``make bench``): every figure printed next to a peer measured in the same run."""
