"""Offline evaluation: runs of each retrieval system over a labelled set, ranx metrics,
paired significance tests and JSON + Markdown reports."""
