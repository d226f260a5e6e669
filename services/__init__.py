"""Flywheel's shared domain library: settings, catalog, SPLADE encoding, indexes, registry."""
