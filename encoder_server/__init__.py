"""The search service: GET /search, health, metrics; hot-swaps model versions."""
