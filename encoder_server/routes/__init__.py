"""HTTP routes of encoder_server."""
