"""The retraining job and canary controller (built with the retrainer issue; this package holds
nothing yet)."""
