"""Generated from protos/schedcp/v1 by scripts/gen_protos.py; do not edit."""
