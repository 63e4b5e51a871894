"""schedcp: an agentic control plane for Linux CPU scheduling.

Layers, each importing only those before it (checked by `make lint`, scripts/check_layers.py):
`runtime` (config, bus, gRPC, telemetry, TLS) <- `domain` (policies, parameters, matchers, procfs,
verdicts) <- `toolchain` (the sched_ext build and sandbox micro-VM) <- the services; `cli` (the
`schedcp` command and the local stack) sits beside the services and never imports them.
"""

from pathlib import Path

__version__ = "0.1.0"

# The policy library and the loader's source: top-level folders of the checkout, carried in the
# wheel as package data through the symlinks in schedcp/data (setuptools copies their targets).
DATA = Path(__file__).resolve().parent / "data"
