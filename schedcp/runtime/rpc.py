"""gRPC plumbing shared by all services and clients: tracing, deadlines and error mapping.

Server side, `RuntimeInterceptor` wraps every handler so that it
- runs inside a SERVER span whose parent is the caller's `traceparent` metadata;
- gets the default deadline (`SCHEDCP_RPC_TIMEOUT_S`) when it is unary and the caller set none;
- turns the domain exceptions of `schedcp.runtime.errors` (and pydantic validation errors) into the
  matching status with the exception's message, and anything unexpected into INTERNAL with a
  trace id to find the logged traceback by.

Client side, `channel()` opens an aio channel whose calls run in CLIENT spans, carry the trace
context, and get a deadline when the caller passes no timeout (unary calls the channel's
default, streams the process's `SCHEDCP_STREAM_TIMEOUT_S`): no outbound call waits forever.
A service borrows its channels with `shared()` instead: one open channel per peer, reused by
every call (a new channel per call was about a quarter of a planner's CPU at fleet scale: each
one a TCP connection and an HTTP/2 handshake on both sides), closed by `close_shared()` at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pydantic
from google.protobuf.message import DecodeError
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from schedcp.runtime import access, errors, limits, metrics, telemetry, tls

log = logging.getLogger(__name__)

_STATUS_FOR_EXCEPTION: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (pydantic.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DependencyUnavailable, grpc.StatusCode.UNAVAILABLE),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotImplementedError, grpc.StatusCode.UNIMPLEMENTED),
)


def _split_method(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _rpc_attributes(method: str) -> dict[str, str]:
    service, name = _split_method(method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message a handler's exception becomes."""
    for kind, code in _STATUS_FOR_EXCEPTION:
        if isinstance(exc, kind):
            if isinstance(exc, pydantic.ValidationError):
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "request"
                return code, f"{where}: {first['msg']}"
            if isinstance(exc, TimeoutError):
                return code, "the call took longer than its deadline"
            if isinstance(exc, NotImplementedError):
                return code, "this call is not available in this version of schedcp"
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, (
        f"internal error in the service ({type(exc).__name__}); "
        f"its log has the details under trace id {telemetry.current_trace_id()}"
    )


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """Tracing, default deadlines, access checks (with TLS: `schedcp.runtime.access`), rate limits
    (`schedcp.runtime.limits`) and error mapping for every handler of a server."""

    def __init__(self, default_timeout_s: float, check_access: bool = False,
                 limiter: limits.RateLimiter | None = None) -> None:
        self._default_timeout_s = default_timeout_s
        self._guard = _Guard(check_access, limiter)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        headers = {k: v for k, v in (handler_call_details.invocation_metadata or ()) if isinstance(v, str)}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, headers, handler.unary_unary),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, headers, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, headers, handler.unary_stream),
                request_deserializer=_lenient(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, headers, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(self, method: str, headers: dict[str, str], behaviour: Callable) -> Callable:
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async with _served(method, headers, context, self._guard):
                _check_decoded(request)
                timeout = None if context.time_remaining() is not None else self._default_timeout_s
                async with asyncio.timeout(timeout):
                    return await behaviour(request, context)

        return wrapped

    def _streaming(self, method: str, headers: dict[str, str], behaviour: Callable) -> Callable:
        # Streams (Tune, Verify, Deploy) legitimately run for minutes: they end when they finish
        # or when the caller cancels or its own deadline passes, never by a server default.
        async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async with _served(method, headers, context, self._guard):
                _check_decoded(request)
                async for response in behaviour(request, context):
                    yield response

        return wrapped


@dataclass(frozen=True)
class _Guard:
    """Who may call (with TLS) and how often (rate limits), checked before any handler runs."""

    check_access: bool
    limiter: limits.RateLimiter | None

    def admit(self, method: str, context: grpc.aio.ServicerContext, span: trace.Span) -> None:
        identity = tls.peer_identity(context)
        if self.check_access:
            span.set_attribute("schedcp.peer", identity)
            access.check(method, identity)
        if self.limiter is not None and tls.role_of(identity) not in limits.UNLIMITED_ROLES:
            self.limiter.check(method, limits.client_key(identity, context.peer()))


@dataclass(frozen=True)
class _Undecodable:
    """A request whose bytes are not the message the method takes."""

    message_type: str
    error: str


def _lenient(deserializer: Callable | None) -> Callable | None:
    """gRPC answers bytes that do not parse with INTERNAL; this lets the handler answer
    INVALID_ARGUMENT with what was expected instead."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    message_type = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "the request message")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(message_type, str(exc))

    return deserialize


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise errors.InvalidArgument(f"the request is not a valid {request.message_type} ({request.error})")


@contextlib.asynccontextmanager
async def _served(method: str, headers: dict[str, str], context: grpc.aio.ServicerContext, guard: _Guard):
    parent = telemetry.extract(headers)
    started = time.monotonic()
    with telemetry.tracer().start_as_current_span(
        method.lstrip("/"), context=parent, kind=SpanKind.SERVER, attributes=_rpc_attributes(method)
    ) as span, _counted(method, context, started):
        try:
            guard.admit(method, context, span)
            yield
        except grpc.aio.AbortError:
            _record_status(span, context.code())
            raise
        except asyncio.CancelledError:
            span.set_attribute("rpc.grpc.status_code", grpc.StatusCode.CANCELLED.value[0])
            raise
        except Exception as exc:
            code, message = status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            else:
                log.info("%s: %s: %s", method, code.name, message)
            _record_status(span, code)
            await context.abort(code, message)
        else:
            _record_status(span, context.code())


@contextlib.contextmanager
def _counted(method: str, context: grpc.aio.ServicerContext, started: float):
    """The call in schedcp_rpc_requests_total (by its final status) and its duration."""
    code = "CANCELLED"
    try:
        yield
        code = (context.code() or grpc.StatusCode.OK).name
    except asyncio.CancelledError:
        raise
    except BaseException:
        code = (context.code() or grpc.StatusCode.UNKNOWN).name
        raise
    finally:
        metrics.RPC_REQUESTS.labels(method, code).inc()
        metrics.RPC_DURATION.labels(method).observe(time.monotonic() - started)


def _record_status(span: trace.Span, code: grpc.StatusCode | None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.UNIMPLEMENTED):
        span.set_status(Status(StatusCode.ERROR, code.name))


class _TracedChannel:
    """An aio channel whose calls run in CLIENT spans that carry the trace context, with a
    deadline when the caller sets none (unary calls: the channel's default; streams: the
    process's stream timeout). It wraps the multicallables the stubs ask for instead of using
    gRPC client interceptors, which add a task and futures to every call (measured here: about a
    fifth of a call's CPU, client and server together)."""

    def __init__(self, channel: grpc.aio.Channel, unary_timeout_s: float) -> None:
        self._channel = channel
        self._unary_timeout_s = unary_timeout_s

    # A stub asks for every method of its service and a caller uses one or two: each gRPC
    # multicallable is made when its method is first called.
    def unary_unary(self, method, *args, **kwargs):
        return _Unary(functools.partial(self._channel.unary_unary, method, *args, **kwargs), method,
                      self._unary_timeout_s)

    def stream_unary(self, method, *args, **kwargs):
        return _Unary(functools.partial(self._channel.stream_unary, method, *args, **kwargs), method,
                      self._unary_timeout_s)

    def unary_stream(self, method, *args, **kwargs):
        return _Streaming(functools.partial(self._channel.unary_stream, method, *args, **kwargs), method)

    def stream_stream(self, method, *args, **kwargs):
        return _Streaming(functools.partial(self._channel.stream_stream, method, *args, **kwargs), method)

    def __getattr__(self, name: str) -> Any:  # close(), get_state(), ...
        return getattr(self._channel, name)

    async def __aenter__(self) -> _TracedChannel:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._channel.close()


def _start(multicallable, name: str, request, timeout: float | None, metadata, kwargs: dict):
    """The call and its CLIENT span (current while the call starts, so the context goes out)."""
    span = telemetry.tracer().start_span(name, kind=SpanKind.CLIENT, attributes=_rpc_attributes(name))
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        headers = grpc.aio.Metadata(*(metadata or ()), *telemetry.inject({}).items())
        return span, multicallable(request, timeout=timeout, metadata=headers, **kwargs)
    except BaseException:
        span.end()
        raise
    finally:
        otel_context.detach(token)


def _method(method: str | bytes) -> str:
    return (method.decode() if isinstance(method, bytes) else method).lstrip("/")


class _Lazy:
    """A method's gRPC multicallable, made on its first call."""

    def __init__(self, make: Callable[[], Any], method: str | bytes) -> None:
        self._make, self._made, self._name = make, None, _method(method)

    @property
    def _multicallable(self):
        if self._made is None:
            self._made = self._make()
        return self._made


class _Unary(_Lazy):
    def __init__(self, make: Callable[[], Any], method: str | bytes, timeout_s: float) -> None:
        super().__init__(make, method)
        self._timeout_s = timeout_s

    def __call__(self, request, *, timeout: float | None = None, metadata=None, **kwargs) -> _UnaryCall:
        span, call = _start(self._multicallable, self._name, request,
                            self._timeout_s if timeout is None else timeout, metadata, kwargs)
        return _UnaryCall(call, span)


class _UnaryCall:
    """Awaiting it awaits the call, then ends its span with the call's status."""

    def __init__(self, call, span: trace.Span) -> None:
        self._call, self._span = call, span

    def __await__(self):
        code = grpc.StatusCode.CANCELLED
        try:
            response = yield from self._call.__await__()
            code = grpc.StatusCode.OK
            return response
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            raise
        finally:
            _record_status(self._span, code)
            self._span.end()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


# Span-closing tasks of finished streams, referenced until they ran.
_PENDING: set[asyncio.Task] = set()


class _Streaming(_Lazy):
    def __call__(self, request, *, timeout: float | None = None, metadata=None, **kwargs):
        span, call = _start(self._multicallable, self._name, request,
                            _stream_timeout_s if timeout is None else timeout, metadata, kwargs)

        async def finish(done_call) -> None:
            _record_status(span, await done_call.code())  # a done call answers at once
            span.end()

        def on_done(done_call) -> None:
            # aio's code() is a coroutine and done callbacks are plain functions; a stream's
            # consumer may stop reading early, so its end is known only here.
            task = asyncio.get_running_loop().create_task(finish(done_call))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)

        call.add_done_callback(on_done)
        return call


# This process's client identity and streaming deadline (set once at start by the service
# runtime or the CLI).
_identity: tls.TlsFiles | None = None
_stream_timeout_s = 1800.0
_PROCESS = object()


def configure_clients(files: tls.TlsFiles | None, stream_timeout_s: float) -> None:
    """Make every channel this process opens present these TLS files (None: plaintext) and give
    its streaming calls this deadline when they set none."""
    global _identity, _stream_timeout_s
    _identity, _stream_timeout_s = files, stream_timeout_s


@functools.lru_cache(maxsize=8)
def _credentials(files: tls.TlsFiles) -> grpc.ChannelCredentials:
    return tls.channel_credentials(files)


def channel(target: str, default_timeout_s: float = 30.0, identity: Any = _PROCESS,
            **options: Any) -> _TracedChannel:
    """An aio channel whose calls are traced and get deadlines (`default_timeout_s` for unary
    calls, the process's stream timeout for streams), over mutual TLS with this process's
    identity when TLS is on (`identity` overrides it: TlsFiles or None)."""
    return _TracedChannel(_open(target, _identity if identity is _PROCESS else identity, options), default_timeout_s)


def _open(target: str, files: tls.TlsFiles | None, options: dict[str, Any]) -> grpc.aio.Channel:
    if files is None:
        return grpc.aio.insecure_channel(target, options=list(options.items()))
    return grpc.aio.secure_channel(target, _credentials(files), options=list(options.items()))


# Each shared channel has its own connection state: gRPC otherwise shares connections (and
# their reconnect backoff) between channels to one address, so the new channel after one that
# met an unreachable peer would inherit its backoff. And for a caller that handles an
# unreachable peer inside its borrowed channel (a polling loop), the backoff (up to two
# minutes by default) is kept to seconds.
_SHARED_OPTIONS = {"grpc.use_local_subchannel_pool": 1, "grpc.max_reconnect_backoff_ms": 5000}
# Idle shared channels kept open per process (the least recently used beyond it are closed):
# a planner talks to thousands of executors, a few at a time.
MAX_IDLE_SHARED = 64


@dataclass
class _Shared:
    channel: grpc.aio.Channel
    users: int = 0
    broken: bool = False


class _ChannelPool:
    """The open channels of one event loop, by (target, identity); each borrower's deadline is
    its own."""

    def __init__(self) -> None:
        self._open: OrderedDict[tuple, _Shared] = OrderedDict()

    @contextlib.asynccontextmanager
    async def borrow(self, target: str, default_timeout_s: float) -> AsyncIterator[_TracedChannel]:
        key = (target, _identity)
        shared = self._open.get(key)
        if shared is None:
            shared = self._open[key] = _Shared(_open(target, _identity, _SHARED_OPTIONS))
        self._open.move_to_end(key)
        shared.users += 1
        try:
            yield _TracedChannel(shared.channel, default_timeout_s)
        except grpc.aio.AioRpcError:
            # A peer that could not be reached (not a peer that answered UNAVAILABLE, e.g. its
            # own dependency down): the next call gets a new channel, which connects at once,
            # rather than this one, which gRPC holds back (reconnect backoff) after its peer restarted.
            failed = shared.channel.get_state() == grpc.ChannelConnectivity.TRANSIENT_FAILURE
            if failed and self._open.get(key) is shared:
                shared.broken = True
                del self._open[key]
            raise
        finally:
            shared.users -= 1
            if shared.broken and not shared.users:
                await shared.channel.close()
            await self._trim()

    async def _trim(self) -> None:
        # Taken out of the pool before any await, so no other borrower finds or trims them.
        idle = [key for key, shared in self._open.items() if not shared.users]
        closing = [self._open.pop(key) for key in idle[:max(0, len(idle) - MAX_IDLE_SHARED)]]
        for shared in closing:
            await shared.channel.close()

    async def close(self) -> None:
        while self._open:
            _, shared = self._open.popitem()
            await shared.channel.close()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ChannelPool] = weakref.WeakKeyDictionary()


def shared(target: str, default_timeout_s: float = 30.0) -> contextlib.AbstractAsyncContextManager[_TracedChannel]:
    """`async with shared(target) as channel`: this event loop's open channel to `target` (as
    `channel()` makes them), opened on first use and left open for the next call."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = _ChannelPool()
    return pool.borrow(target, default_timeout_s)


async def close_shared() -> None:
    """Close this event loop's shared channels (a service stopping)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
