import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import host_pb2 as _host_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkloadClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_CLASS_UNSPECIFIED: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_LATENCY_SENSITIVE: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_INTERACTIVE: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_BATCH: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_BACKGROUND: _ClassVar[WorkloadClass]

class GroupingKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GROUPING_KIND_UNSPECIFIED: _ClassVar[GroupingKind]
    GROUPING_KIND_PROCESS: _ClassVar[GroupingKind]
    GROUPING_KIND_COMM: _ClassVar[GroupingKind]
    GROUPING_KIND_CGROUP: _ClassVar[GroupingKind]

class DetailLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DETAIL_LEVEL_UNSPECIFIED: _ClassVar[DetailLevel]
    DETAIL_LEVEL_SUMMARY: _ClassVar[DetailLevel]
    DETAIL_LEVEL_DETAILED: _ClassVar[DetailLevel]
    DETAIL_LEVEL_FULL: _ClassVar[DetailLevel]
WORKLOAD_CLASS_UNSPECIFIED: WorkloadClass
WORKLOAD_CLASS_LATENCY_SENSITIVE: WorkloadClass
WORKLOAD_CLASS_INTERACTIVE: WorkloadClass
WORKLOAD_CLASS_BATCH: WorkloadClass
WORKLOAD_CLASS_BACKGROUND: WorkloadClass
GROUPING_KIND_UNSPECIFIED: GroupingKind
GROUPING_KIND_PROCESS: GroupingKind
GROUPING_KIND_COMM: GroupingKind
GROUPING_KIND_CGROUP: GroupingKind
DETAIL_LEVEL_UNSPECIFIED: DetailLevel
DETAIL_LEVEL_SUMMARY: DetailLevel
DETAIL_LEVEL_DETAILED: DetailLevel
DETAIL_LEVEL_FULL: DetailLevel

class SchedSettings(_message.Message):
    __slots__ = ("policy", "nice", "slice_us")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    SLICE_US_FIELD_NUMBER: _ClassVar[int]
    policy: str
    nice: int
    slice_us: float
    def __init__(self, policy: _Optional[str] = ..., nice: _Optional[int] = ..., slice_us: _Optional[float] = ...) -> None: ...

class GroupFeatures(_message.Message):
    __slots__ = ("cpu_share", "wakeups_per_s", "voluntary_ratio", "mean_burst_us", "runq_latency", "threads", "cpu_seconds", "cpu_pressure_some_avg10", "active_threads", "demand", "has_tty", "cpu_per_wakeup_us", "wait_share", "processes", "median_age_s", "start_spread_s", "spawns_per_s", "serves", "response", "socketless", "client_of", "job_seconds", "wakeup_latency")
    CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    WAKEUPS_PER_S_FIELD_NUMBER: _ClassVar[int]
    VOLUNTARY_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEAN_BURST_US_FIELD_NUMBER: _ClassVar[int]
    RUNQ_LATENCY_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_PRESSURE_SOME_AVG10_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_THREADS_FIELD_NUMBER: _ClassVar[int]
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    HAS_TTY_FIELD_NUMBER: _ClassVar[int]
    CPU_PER_WAKEUP_US_FIELD_NUMBER: _ClassVar[int]
    WAIT_SHARE_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_AGE_S_FIELD_NUMBER: _ClassVar[int]
    START_SPREAD_S_FIELD_NUMBER: _ClassVar[int]
    SPAWNS_PER_S_FIELD_NUMBER: _ClassVar[int]
    SERVES_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SOCKETLESS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_OF_FIELD_NUMBER: _ClassVar[int]
    JOB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WAKEUP_LATENCY_FIELD_NUMBER: _ClassVar[int]
    cpu_share: float
    wakeups_per_s: float
    voluntary_ratio: float
    mean_burst_us: float
    runq_latency: _common_pb2.LatencyStats
    threads: int
    cpu_seconds: float
    cpu_pressure_some_avg10: float
    active_threads: int
    demand: float
    has_tty: bool
    cpu_per_wakeup_us: float
    wait_share: float
    processes: int
    median_age_s: float
    start_spread_s: float
    spawns_per_s: float
    serves: bool
    response: _common_pb2.LatencyStats
    socketless: bool
    client_of: _containers.RepeatedScalarFieldContainer[str]
    job_seconds: float
    wakeup_latency: _common_pb2.LatencyStats
    def __init__(self, cpu_share: _Optional[float] = ..., wakeups_per_s: _Optional[float] = ..., voluntary_ratio: _Optional[float] = ..., mean_burst_us: _Optional[float] = ..., runq_latency: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ..., threads: _Optional[int] = ..., cpu_seconds: _Optional[float] = ..., cpu_pressure_some_avg10: _Optional[float] = ..., active_threads: _Optional[int] = ..., demand: _Optional[float] = ..., has_tty: _Optional[bool] = ..., cpu_per_wakeup_us: _Optional[float] = ..., wait_share: _Optional[float] = ..., processes: _Optional[int] = ..., median_age_s: _Optional[float] = ..., start_spread_s: _Optional[float] = ..., spawns_per_s: _Optional[float] = ..., serves: _Optional[bool] = ..., response: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ..., socketless: _Optional[bool] = ..., client_of: _Optional[_Iterable[str]] = ..., job_seconds: _Optional[float] = ..., wakeup_latency: _Optional[_Union[_common_pb2.LatencyStats, _Mapping]] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("workload_class", "confidence", "reason")
    WORKLOAD_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workload_class: WorkloadClass
    confidence: float
    reason: str
    def __init__(self, workload_class: _Optional[_Union[WorkloadClass, str]] = ..., confidence: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class WorkloadGroup(_message.Message):
    __slots__ = ("group_id", "name", "kind", "matcher", "pids", "cgroup", "features", "classification", "settings", "long_jobs")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MATCHER_FIELD_NUMBER: _ClassVar[int]
    PIDS_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    LONG_JOBS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    name: str
    kind: GroupingKind
    matcher: _common_pb2.GroupMatcher
    pids: _containers.RepeatedScalarFieldContainer[int]
    cgroup: str
    features: GroupFeatures
    classification: Classification
    settings: SchedSettings
    long_jobs: _containers.RepeatedCompositeFieldContainer[LongJob]
    def __init__(self, group_id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[GroupingKind, str]] = ..., matcher: _Optional[_Union[_common_pb2.GroupMatcher, _Mapping]] = ..., pids: _Optional[_Iterable[int]] = ..., cgroup: _Optional[str] = ..., features: _Optional[_Union[GroupFeatures, _Mapping]] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., settings: _Optional[_Union[SchedSettings, _Mapping]] = ..., long_jobs: _Optional[_Iterable[_Union[LongJob, _Mapping]]] = ...) -> None: ...

class LongJob(_message.Message):
    __slots__ = ("pid", "cmdline", "matcher", "work_ratio", "evidence", "seconds")
    PID_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    MATCHER_FIELD_NUMBER: _ClassVar[int]
    WORK_RATIO_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    cmdline: str
    matcher: _common_pb2.GroupMatcher
    work_ratio: float
    evidence: str
    seconds: float
    def __init__(self, pid: _Optional[int] = ..., cmdline: _Optional[str] = ..., matcher: _Optional[_Union[_common_pb2.GroupMatcher, _Mapping]] = ..., work_ratio: _Optional[float] = ..., evidence: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class WorkloadSignature(_message.Message):
    __slots__ = ("version", "dimensions", "values")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    version: int
    dimensions: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, version: _Optional[int] = ..., dimensions: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class PressureStall(_message.Message):
    __slots__ = ("some_avg10", "some_avg60", "full_avg10", "full_avg60")
    SOME_AVG10_FIELD_NUMBER: _ClassVar[int]
    SOME_AVG60_FIELD_NUMBER: _ClassVar[int]
    FULL_AVG10_FIELD_NUMBER: _ClassVar[int]
    FULL_AVG60_FIELD_NUMBER: _ClassVar[int]
    some_avg10: float
    some_avg60: float
    full_avg10: float
    full_avg60: float
    def __init__(self, some_avg10: _Optional[float] = ..., some_avg60: _Optional[float] = ..., full_avg10: _Optional[float] = ..., full_avg60: _Optional[float] = ...) -> None: ...

class ProfileText(_message.Message):
    __slots__ = ("level", "text")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    level: DetailLevel
    text: str
    def __init__(self, level: _Optional[_Union[DetailLevel, str]] = ..., text: _Optional[str] = ...) -> None: ...

class WorkloadProfile(_message.Message):
    __slots__ = ("profile_id", "host", "window_start", "window", "groups", "signature", "cpu_pressure", "texts", "sampler", "sampler_note", "host_cpu_share", "kernel_cpu_share", "grouping")
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CPU_PRESSURE_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_NOTE_FIELD_NUMBER: _ClassVar[int]
    HOST_CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    KERNEL_CPU_SHARE_FIELD_NUMBER: _ClassVar[int]
    GROUPING_FIELD_NUMBER: _ClassVar[int]
    profile_id: str
    host: _host_pb2.HostFacts
    window_start: _timestamp_pb2.Timestamp
    window: _duration_pb2.Duration
    groups: _containers.RepeatedCompositeFieldContainer[WorkloadGroup]
    signature: WorkloadSignature
    cpu_pressure: PressureStall
    texts: _containers.RepeatedCompositeFieldContainer[ProfileText]
    sampler: str
    sampler_note: str
    host_cpu_share: float
    kernel_cpu_share: float
    grouping: GroupingKind
    def __init__(self, profile_id: _Optional[str] = ..., host: _Optional[_Union[_host_pb2.HostFacts, _Mapping]] = ..., window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., groups: _Optional[_Iterable[_Union[WorkloadGroup, _Mapping]]] = ..., signature: _Optional[_Union[WorkloadSignature, _Mapping]] = ..., cpu_pressure: _Optional[_Union[PressureStall, _Mapping]] = ..., texts: _Optional[_Iterable[_Union[ProfileText, _Mapping]]] = ..., sampler: _Optional[str] = ..., sampler_note: _Optional[str] = ..., host_cpu_share: _Optional[float] = ..., kernel_cpu_share: _Optional[float] = ..., grouping: _Optional[_Union[GroupingKind, str]] = ...) -> None: ...
