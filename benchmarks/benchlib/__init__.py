"""Benchmark harness for aiodatabases: driver, per-contender workers and reporting.

The driver side (:mod:`benchlib.registry`, :mod:`benchlib.envs`, :mod:`benchlib.report`) runs
in whatever interpreter starts ``benchmarks/run.py``. The worker side (:mod:`benchlib.common`
and the backend packages such as :mod:`benchlib.sqlite`) runs inside each contender's own
virtual environment, so it may import only the standard library and that contender's packages.
"""
