"""Where the CLI writes: results to stdout, progress and errors to stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

# Piped output gets wide tables instead of rich's 80-column fallback.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)


def say(text: str, to: Console = out) -> None:
    """Print text as it is (no rich markup or highlighting: names and messages may hold brackets)."""
    to.print(text, markup=False, highlight=False)


def table(title: str, columns: Iterable[str]) -> Table:
    """A result table with its title on the left."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        made.add_column(column)
    return made


def print_message(message: Message, indent: int | None = 2, with_defaults: bool = False) -> None:
    """A protobuf message as JSON on stdout (`--json`); indent None: one line; `with_defaults`
    prints fields holding their default too (a false flag that matters)."""
    print(json_format.MessageToJson(message, indent=indent, always_print_fields_with_no_presence=with_defaults),
          flush=True)
