from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StageStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_STATUS_UNSPECIFIED: _ClassVar[StageStatus]
    STAGE_STATUS_STARTED: _ClassVar[StageStatus]
    STAGE_STATUS_RUNNING: _ClassVar[StageStatus]
    STAGE_STATUS_SUCCEEDED: _ClassVar[StageStatus]
    STAGE_STATUS_FAILED: _ClassVar[StageStatus]
    STAGE_STATUS_SKIPPED: _ClassVar[StageStatus]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_LOWER_IS_BETTER: _ClassVar[Direction]
    DIRECTION_HIGHER_IS_BETTER: _ClassVar[Direction]
STAGE_STATUS_UNSPECIFIED: StageStatus
STAGE_STATUS_STARTED: StageStatus
STAGE_STATUS_RUNNING: StageStatus
STAGE_STATUS_SUCCEEDED: StageStatus
STAGE_STATUS_FAILED: StageStatus
STAGE_STATUS_SKIPPED: StageStatus
DIRECTION_UNSPECIFIED: Direction
DIRECTION_LOWER_IS_BETTER: Direction
DIRECTION_HIGHER_IS_BETTER: Direction

class GroupMatcher(_message.Message):
    __slots__ = ("pid", "comm", "comm_regex", "cgroup", "group_id", "cmdline_regex")
    PID_FIELD_NUMBER: _ClassVar[int]
    COMM_FIELD_NUMBER: _ClassVar[int]
    COMM_REGEX_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_REGEX_FIELD_NUMBER: _ClassVar[int]
    pid: int
    comm: str
    comm_regex: str
    cgroup: str
    group_id: str
    cmdline_regex: str
    def __init__(self, pid: _Optional[int] = ..., comm: _Optional[str] = ..., comm_regex: _Optional[str] = ..., cgroup: _Optional[str] = ..., group_id: _Optional[str] = ..., cmdline_regex: _Optional[str] = ...) -> None: ...

class HistogramBucket(_message.Message):
    __slots__ = ("lower_us", "upper_us", "count")
    LOWER_US_FIELD_NUMBER: _ClassVar[int]
    UPPER_US_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower_us: float
    upper_us: float
    count: int
    def __init__(self, lower_us: _Optional[float] = ..., upper_us: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class LatencyStats(_message.Message):
    __slots__ = ("samples", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "histogram", "source")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MEAN_US_FIELD_NUMBER: _ClassVar[int]
    P50_US_FIELD_NUMBER: _ClassVar[int]
    P90_US_FIELD_NUMBER: _ClassVar[int]
    P99_US_FIELD_NUMBER: _ClassVar[int]
    P999_US_FIELD_NUMBER: _ClassVar[int]
    MAX_US_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    samples: int
    mean_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    histogram: _containers.RepeatedCompositeFieldContainer[HistogramBucket]
    source: str
    def __init__(self, samples: _Optional[int] = ..., mean_us: _Optional[float] = ..., p50_us: _Optional[float] = ..., p90_us: _Optional[float] = ..., p99_us: _Optional[float] = ..., p999_us: _Optional[float] = ..., max_us: _Optional[float] = ..., histogram: _Optional[_Iterable[_Union[HistogramBucket, _Mapping]]] = ..., source: _Optional[str] = ...) -> None: ...

class ParamValue(_message.Message):
    __slots__ = ("int_value", "float_value", "bool_value", "string_value")
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    int_value: int
    float_value: float
    bool_value: bool
    string_value: str
    def __init__(self, int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., string_value: _Optional[str] = ...) -> None: ...

class MetricSpec(_message.Message):
    __slots__ = ("name", "groups", "direction")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    groups: _containers.RepeatedCompositeFieldContainer[GroupMatcher]
    direction: Direction
    def __init__(self, name: _Optional[str] = ..., groups: _Optional[_Iterable[_Union[GroupMatcher, _Mapping]]] = ..., direction: _Optional[_Union[Direction, str]] = ...) -> None: ...
