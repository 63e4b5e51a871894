import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_RUNNING: _ClassVar[RolloutState]
    ROLLOUT_STATE_PAUSED: _ClassVar[RolloutState]
    ROLLOUT_STATE_COMPLETED: _ClassVar[RolloutState]
    ROLLOUT_STATE_HALTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_ABORTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_PROPOSED: _ClassVar[RolloutState]

class RolloutHostResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_HOST_RESULT_UNSPECIFIED: _ClassVar[RolloutHostResult]
    ROLLOUT_HOST_RESULT_KEPT: _ClassVar[RolloutHostResult]
    ROLLOUT_HOST_RESULT_ROLLED_BACK: _ClassVar[RolloutHostResult]
    ROLLOUT_HOST_RESULT_FAILED: _ClassVar[RolloutHostResult]
    ROLLOUT_HOST_RESULT_ALREADY_RUNNING: _ClassVar[RolloutHostResult]
    ROLLOUT_HOST_RESULT_NOTHING_TO_DO: _ClassVar[RolloutHostResult]
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_RUNNING: RolloutState
ROLLOUT_STATE_PAUSED: RolloutState
ROLLOUT_STATE_COMPLETED: RolloutState
ROLLOUT_STATE_HALTED: RolloutState
ROLLOUT_STATE_ABORTED: RolloutState
ROLLOUT_STATE_PROPOSED: RolloutState
ROLLOUT_HOST_RESULT_UNSPECIFIED: RolloutHostResult
ROLLOUT_HOST_RESULT_KEPT: RolloutHostResult
ROLLOUT_HOST_RESULT_ROLLED_BACK: RolloutHostResult
ROLLOUT_HOST_RESULT_FAILED: RolloutHostResult
ROLLOUT_HOST_RESULT_ALREADY_RUNNING: RolloutHostResult
ROLLOUT_HOST_RESULT_NOTHING_TO_DO: RolloutHostResult

class StartRolloutRequest(_message.Message):
    __slots__ = ("policy", "parameters", "selector", "waves", "max_rollback_fraction", "intent")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    MAX_ROLLBACK_FRACTION_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    policy: str
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    selector: str
    waves: _containers.RepeatedScalarFieldContainer[str]
    max_rollback_fraction: float
    intent: str
    def __init__(self, policy: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., selector: _Optional[str] = ..., waves: _Optional[_Iterable[str]] = ..., max_rollback_fraction: _Optional[float] = ..., intent: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "with_hosts")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    WITH_HOSTS_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    with_hosts: bool
    def __init__(self, rollout_id: _Optional[str] = ..., with_hosts: _Optional[bool] = ...) -> None: ...

class ListRolloutsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRolloutsResponse(_message.Message):
    __slots__ = ("rollouts",)
    ROLLOUTS_FIELD_NUMBER: _ClassVar[int]
    rollouts: _containers.RepeatedCompositeFieldContainer[Rollout]
    def __init__(self, rollouts: _Optional[_Iterable[_Union[Rollout, _Mapping]]] = ...) -> None: ...

class PauseRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class ResumeRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class ApproveRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RolloutHost(_message.Message):
    __slots__ = ("host_id", "result", "cycle_id", "deployment_id", "message", "reverted")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVERTED_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    result: RolloutHostResult
    cycle_id: str
    deployment_id: str
    message: str
    reverted: bool
    def __init__(self, host_id: _Optional[str] = ..., result: _Optional[_Union[RolloutHostResult, str]] = ..., cycle_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., message: _Optional[str] = ..., reverted: _Optional[bool] = ...) -> None: ...

class RolloutWave(_message.Message):
    __slots__ = ("number", "reach", "hosts", "kept", "rolled_back", "failed", "skipped", "done", "judgement", "trace_id", "started_at", "ended_at")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REACH_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    JUDGEMENT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    number: int
    reach: int
    hosts: int
    kept: int
    rolled_back: int
    failed: int
    skipped: int
    done: bool
    judgement: str
    trace_id: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    def __init__(self, number: _Optional[int] = ..., reach: _Optional[int] = ..., hosts: _Optional[int] = ..., kept: _Optional[int] = ..., rolled_back: _Optional[int] = ..., failed: _Optional[int] = ..., skipped: _Optional[int] = ..., done: _Optional[bool] = ..., judgement: _Optional[str] = ..., trace_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RolloutTrack(_message.Message):
    __slots__ = ("host_class", "workload_cluster", "host_ids", "waves", "state", "reason", "class_outcomes", "class_mean_improvement")
    HOST_CLASS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    HOST_IDS_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CLASS_OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    CLASS_MEAN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    host_class: str
    workload_cluster: str
    host_ids: _containers.RepeatedScalarFieldContainer[str]
    waves: _containers.RepeatedCompositeFieldContainer[RolloutWave]
    state: RolloutState
    reason: str
    class_outcomes: int
    class_mean_improvement: float
    def __init__(self, host_class: _Optional[str] = ..., workload_cluster: _Optional[str] = ..., host_ids: _Optional[_Iterable[str]] = ..., waves: _Optional[_Iterable[_Union[RolloutWave, _Mapping]]] = ..., state: _Optional[_Union[RolloutState, str]] = ..., reason: _Optional[str] = ..., class_outcomes: _Optional[int] = ..., class_mean_improvement: _Optional[float] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("rollout_id", "policy", "parameters", "selector", "waves", "max_rollback_fraction", "intent", "state", "reason", "tracks", "actor", "created_at", "updated_at", "hosts")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    MAX_ROLLBACK_FRACTION_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRACKS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    policy: str
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    selector: str
    waves: _containers.RepeatedScalarFieldContainer[str]
    max_rollback_fraction: float
    intent: str
    state: RolloutState
    reason: str
    tracks: _containers.RepeatedCompositeFieldContainer[RolloutTrack]
    actor: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    hosts: _containers.RepeatedCompositeFieldContainer[RolloutHost]
    def __init__(self, rollout_id: _Optional[str] = ..., policy: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., selector: _Optional[str] = ..., waves: _Optional[_Iterable[str]] = ..., max_rollback_fraction: _Optional[float] = ..., intent: _Optional[str] = ..., state: _Optional[_Union[RolloutState, str]] = ..., reason: _Optional[str] = ..., tracks: _Optional[_Iterable[_Union[RolloutTrack, _Mapping]]] = ..., actor: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hosts: _Optional[_Iterable[_Union[RolloutHost, _Mapping]]] = ...) -> None: ...
