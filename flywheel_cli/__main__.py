"""``python -m flywheel_cli`` is the ``flywheel`` command."""

from flywheel_cli.main import run

run()
