import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import host_pb2 as _host_pb2
from schedcp.v1 import profile_pb2 as _profile_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostInfoResponse(_message.Message):
    __slots__ = ("facts",)
    FACTS_FIELD_NUMBER: _ClassVar[int]
    facts: _host_pb2.HostFacts
    def __init__(self, facts: _Optional[_Union[_host_pb2.HostFacts, _Mapping]] = ...) -> None: ...

class GetProfileRequest(_message.Message):
    __slots__ = ("window", "detail", "max_groups", "grouping")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUPS_FIELD_NUMBER: _ClassVar[int]
    GROUPING_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    detail: _profile_pb2.DetailLevel
    max_groups: int
    grouping: _profile_pb2.GroupingKind
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., detail: _Optional[_Union[_profile_pb2.DetailLevel, str]] = ..., max_groups: _Optional[int] = ..., grouping: _Optional[_Union[_profile_pb2.GroupingKind, str]] = ...) -> None: ...

class MeasureRequest(_message.Message):
    __slots__ = ("duration", "groups")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    groups: _containers.RepeatedCompositeFieldContainer[_common_pb2.GroupMatcher]
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[_common_pb2.GroupMatcher, _Mapping]]] = ...) -> None: ...

class GroupMeasurement(_message.Message):
    __slots__ = ("matcher", "matched_threads", "runq_latency", "cpu_share", "cpu_seconds", "wakeups_per_s", "voluntary_switches", "involuntary_switches", "response", "runq_wait_per_s", "idle_while_waiting_s", "jobs_done", "job_seconds", "longest_job_s", "largest_job_cpu_s", "wakeup_latency")
    MATCHER_FIELD_NUMBER: _ClassVar[int]
    MATCHED_THREADS_FIELD_NUMBER: _ClassVar[int]
    RUNQ_LATENCY_FIELD_NUMBER: _ClassVar[int]
    CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAKEUPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    VOLUNTARY_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    INVOLUNTARY_SWITCHES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    RUNQ_WAIT_PER_S_FIELD_NUMBER: _ClassVar[int]
    IDLE_WHILE_WAITING_S_FIELD_NUMBER: _ClassVar[int]
    JOBS_DONE_FIELD_NUMBER: _ClassVar[int]
    JOB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_JOB_S_FIELD_NUMBER: _ClassVar[int]
    LARGEST_JOB_CPU_S_FIELD_NUMBER: _ClassVar[int]
    WAKEUP_LATENCY_FIELD_NUMBER: _ClassVar[int]
    matcher: _common_pb2.GroupMatcher
    matched_threads: int
    runq_latency: _common_pb2.LatencyStats
    cpu_share: float
    cpu_seconds: float
    wakeups_per_s: float
    voluntary_switches: int
    involuntary_switches: int
    response: _common_pb2.LatencyStats
    runq_wait_per_s: float
    idle_while_waiting_s: float
    jobs_done: int
    job_seconds: float
    longest_job_s: float
    largest_job_cpu_s: float
    wakeup_latency: _common_pb2.LatencyStats
    def __init__(self, matcher: _Optional[_Union[_common_pb2.GroupMatcher, _Mapping]] = ..., matched_threads: _Optional[int] = ..., runq_latency: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ..., cpu_share: _Optional[float] = ..., cpu_seconds: _Optional[float] = ..., wakeups_per_s: _Optional[float] = ..., voluntary_switches: _Optional[int] = ..., involuntary_switches: _Optional[int] = ..., response: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ..., runq_wait_per_s: _Optional[float] = ..., idle_while_waiting_s: _Optional[float] = ..., jobs_done: _Optional[int] = ..., job_seconds: _Optional[float] = ..., longest_job_s: _Optional[float] = ..., largest_job_cpu_s: _Optional[float] = ..., wakeup_latency: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ...) -> None: ...

class MeasureResponse(_message.Message):
    __slots__ = ("groups", "measured", "sampler", "foreign_cpu_share", "observer_cpu_share")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    OBSERVER_CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupMeasurement]
    measured: _duration_pb2.Duration
    sampler: str
    foreign_cpu_share: float
    observer_cpu_share: float
    def __init__(self, groups: _Optional[_Iterable[_Union[GroupMeasurement, _Mapping]]] = ..., measured: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., sampler: _Optional[str] = ..., foreign_cpu_share: _Optional[float] = ..., observer_cpu_share: _Optional[float] = ...) -> None: ...
