"""Benchmarks beside their baselines: ``python -m bench`` (see ``bench/__main__.py``)."""


class Skip(Exception):  # noqa: N818 - reads as `raise Skip("why")`
    """This benchmark (or case) cannot run here; the reason is printed and recorded."""
