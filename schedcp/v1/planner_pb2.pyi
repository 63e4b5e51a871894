import datetime

from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import deployment_pb2 as _deployment_pb2
from schedcp.v1 import cycle_pb2 as _cycle_pb2
from schedcp.v1 import goal_pb2 as _goal_pb2
from schedcp.v1 import host_pb2 as _host_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TuneRequest(_message.Message):
    __slots__ = ("host_id", "intent", "provider", "policy", "parameters", "budget")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    intent: str
    provider: str
    policy: str
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    budget: int
    def __init__(self, host_id: _Optional[str] = ..., intent: _Optional[str] = ..., provider: _Optional[str] = ..., policy: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., budget: _Optional[int] = ...) -> None: ...

class PlanRequest(_message.Message):
    __slots__ = ("host_id", "intent", "provider")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    intent: str
    provider: str
    def __init__(self, host_id: _Optional[str] = ..., intent: _Optional[str] = ..., provider: _Optional[str] = ...) -> None: ...

class PlanResponse(_message.Message):
    __slots__ = ("cycle_id", "goal", "candidates", "llm_usage")
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    LLM_USAGE_FIELD_NUMBER: _ClassVar[int]
    cycle_id: str
    goal: _goal_pb2.OptimizationGoal
    candidates: _cycle_pb2.CandidateList
    llm_usage: _cycle_pb2.LlmUsage
    def __init__(self, cycle_id: _Optional[str] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ..., candidates: _Optional[_Union[_cycle_pb2.CandidateList, _Mapping]] = ..., llm_usage: _Optional[_Union[_cycle_pb2.LlmUsage, _Mapping]] = ...) -> None: ...

class SetAutoRequest(_message.Message):
    __slots__ = ("host_id", "enabled")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    enabled: bool
    def __init__(self, host_id: _Optional[str] = ..., enabled: _Optional[bool] = ...) -> None: ...

class SetAutoResponse(_message.Message):
    __slots__ = ("host_id", "enabled", "message")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    enabled: bool
    message: str
    def __init__(self, host_id: _Optional[str] = ..., enabled: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ("host_ids",)
    HOST_IDS_FIELD_NUMBER: _ClassVar[int]
    host_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, host_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListHostsResponse(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedCompositeFieldContainer[_host_pb2.HostRegistration]
    def __init__(self, hosts: _Optional[_Iterable[_Union[_host_pb2.HostRegistration, _Mapping]]] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("host_id", "limit")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    limit: int
    def __init__(self, host_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_deployment_pb2.AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[_deployment_pb2.AuditRecord, _Mapping]]] = ...) -> None: ...

class LlmStatusRequest(_message.Message):
    __slots__ = ("probe", "model")
    PROBE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    probe: bool
    model: str
    def __init__(self, probe: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class LlmCall(_message.Message):
    __slots__ = ("at", "structured_output", "latency_ms", "input_tokens", "output_tokens", "error")
    AT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    structured_output: str
    latency_ms: float
    input_tokens: int
    output_tokens: int
    error: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., structured_output: _Optional[str] = ..., latency_ms: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class LlmStatusResponse(_message.Message):
    __slots__ = ("endpoint", "model", "key_configured", "default_provider", "structured_output", "last_call", "probe_ok", "probe_message")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEY_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LAST_CALL_FIELD_NUMBER: _ClassVar[int]
    PROBE_OK_FIELD_NUMBER: _ClassVar[int]
    PROBE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    model: str
    key_configured: bool
    default_provider: str
    structured_output: str
    last_call: LlmCall
    probe_ok: bool
    probe_message: str
    def __init__(self, endpoint: _Optional[str] = ..., model: _Optional[str] = ..., key_configured: _Optional[bool] = ..., default_provider: _Optional[str] = ..., structured_output: _Optional[str] = ..., last_call: _Optional[_Union[LlmCall, _Mapping]] = ..., probe_ok: _Optional[bool] = ..., probe_message: _Optional[str] = ...) -> None: ...
