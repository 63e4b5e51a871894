"""Where the CLI writes: results to stdout, progress and errors to stderr."""

from __future__ import annotations

import sys

from rich.console import Console

# Piped output gets wide tables instead of rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def say(text: str, to: Console = out) -> None:
    """Print text as it is (no rich markup or highlighting: names and messages may hold brackets)."""
    to.print(text, markup=False, highlight=False)
