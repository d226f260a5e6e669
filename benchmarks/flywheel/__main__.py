"""``python -m benchmarks.flywheel``."""

from benchmarks.flywheel.cli import main

raise SystemExit(main())
