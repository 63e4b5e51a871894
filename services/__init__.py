"""The five schedcp services; each runs as `python -m services.<role>`."""
