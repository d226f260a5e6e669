"""The umbrella ``flywheel`` command line."""
