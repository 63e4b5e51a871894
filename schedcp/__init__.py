"""schedcp: an agentic control plane for Linux CPU scheduling (shared runtime and stubs)."""

__version__ = "0.1.0"
