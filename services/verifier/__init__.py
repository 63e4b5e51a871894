"""Verifier: central; the five-stage gate and signed verdicts."""
