"""Component benchmarking: ``visdet bench``, compare, report (docs/benchmarking.md)."""
