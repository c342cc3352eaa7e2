"""Component benchmarking: ``python -m visdet.bench``, compare, report (docs/benchmarking.md)."""
