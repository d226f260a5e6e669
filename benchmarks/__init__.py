"""Scripts that measure and print figures (never timed tests). Run them as modules from the
repository root, ``python -m benchmarks.<name>``, or through ``make bench`` / ``make bench-smoke``
/ ``make bench-flywheel``."""
