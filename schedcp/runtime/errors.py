"""Errors that cross module boundaries, each mapped to one gRPC status or exit status."""

from __future__ import annotations

# Exit statuses of every schedcp process (docs/configuration.md).
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


class InvalidArgument(ValueError):
    """A request is malformed; servers answer INVALID_ARGUMENT with this message."""


class NotFound(LookupError):
    """The named thing does not exist; servers answer NOT_FOUND with this message."""


class PermissionDenied(PermissionError):
    """The caller or what it presents is not trusted (a verdict's signature, a peer); answered
    PERMISSION_DENIED."""


class FailedPrecondition(RuntimeError):
    """The system is not in a state where the request can run; FAILED_PRECONDITION."""


class ResourceExhausted(RuntimeError):
    """The caller used up its share (a rate limit); RESOURCE_EXHAUSTED, saying when to retry."""


class DependencyUnavailable(RuntimeError):
    """Something a process needs (NATS, another service) cannot be reached; the message says
    what and how to fix it."""


class StartupError(RuntimeError):
    """A process cannot start (port taken, missing permission); the message says how to fix it."""
