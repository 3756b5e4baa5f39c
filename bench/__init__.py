"""Benchmarks: each module measures our code beside a hand-written baseline of the same work, in the same run."""
