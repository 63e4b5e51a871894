from schedcp.v1 import deployment_pb2 as _deployment_pb2
from schedcp.v1 import goal_pb2 as _goal_pb2
from schedcp.v1 import host_pb2 as _host_pb2
from schedcp.v1 import policy_pb2 as _policy_pb2
from schedcp.v1 import profile_pb2 as _profile_pb2
from schedcp.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeployRequest(_message.Message):
    __slots__ = ("artifact", "verdict", "canary", "cycle_id", "goal", "signature", "host_id")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    artifact: _policy_pb2.PolicyArtifact
    verdict: _verdict_pb2.Verdict
    canary: _deployment_pb2.CanarySpec
    cycle_id: str
    goal: _goal_pb2.OptimizationGoal
    signature: _profile_pb2.WorkloadSignature
    host_id: str
    def __init__(self, artifact: _Optional[_Union[_policy_pb2.PolicyArtifact, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., canary: _Optional[_Union[_deployment_pb2.CanarySpec, _Mapping]] = ..., cycle_id: _Optional[str] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ..., signature: _Optional[_Union[_profile_pb2.WorkloadSignature, _Mapping]] = ..., host_id: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("reason", "host_id")
    REASON_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    reason: str
    host_id: str
    def __init__(self, reason: _Optional[str] = ..., host_id: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("restored", "message")
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    restored: _deployment_pb2.Deployment
    message: str
    def __init__(self, restored: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("host_id",)
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    def __init__(self, host_id: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("host_id", "current", "last_known_good", "sched_ext", "backends", "journalled_changes")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    LAST_KNOWN_GOOD_FIELD_NUMBER: _ClassVar[int]
    SCHED_EXT_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    JOURNALLED_CHANGES_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    current: _deployment_pb2.Deployment
    last_known_good: _deployment_pb2.Deployment
    sched_ext: _host_pb2.SchedExtInfo
    backends: _containers.RepeatedScalarFieldContainer[str]
    journalled_changes: int
    def __init__(self, host_id: _Optional[str] = ..., current: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ..., last_known_good: _Optional[_Union[_deployment_pb2.Deployment, _Mapping]] = ..., sched_ext: _Optional[_Union[_host_pb2.SchedExtInfo, _Mapping]] = ..., backends: _Optional[_Iterable[str]] = ..., journalled_changes: _Optional[int] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_deployment_pb2.DeploymentEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[_deployment_pb2.DeploymentEvent, _Mapping]]] = ...) -> None: ...
