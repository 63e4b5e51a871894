"""The real local stack for a benchmark run: nats-server and the five services, as `schedcp up`
starts them, on free ports with a private data dir, stopped (and the environment restored)
afterwards. The settings it yields carry the operator's NATS identity."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from schedcp.cli.probe import ServiceStatus
from schedcp.cli.stack import LocalStack, ephemeral_env
from schedcp.runtime.config import Role, Settings, load_settings


@contextlib.contextmanager
def running_stack(roles: Iterable[Role] = tuple(Role),
                  **env: str) -> Iterator[tuple[LocalStack, list[ServiceStatus], Settings]]:
    with tempfile.TemporaryDirectory(prefix="schedcp-bench-") as tmp:
        saved = {k: v for k, v in os.environ.items() if k.startswith("SCHEDCP_")}
        os.environ.update({**ephemeral_env(), "SCHEDCP_DATA_DIR": str(Path(tmp)), "SCHEDCP_LOG_LEVEL": "WARNING",
                           **env})
        try:
            stack = LocalStack(load_settings())
            statuses = asyncio.run(stack.start(roles=roles))
            # The benchmark itself talks to NATS as the operator (the stack has auth on).
            os.environ.update(stack.operator_env())
            try:
                yield stack, statuses, load_settings()
            finally:
                stack.stop()
        finally:
            for key in [k for k in os.environ if k.startswith("SCHEDCP_")]:
                del os.environ[key]
            os.environ.update(saved)
