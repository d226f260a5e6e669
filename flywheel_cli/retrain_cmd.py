"""``flywheel train`` and ``flywheel retrain``."""
