"""Benchmarks. Each module defines ``run(settings, quick) -> (parameters, results)``."""
