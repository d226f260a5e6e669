"""Search indexes: one interface over Qdrant Edge (embedded) and a Qdrant server."""
