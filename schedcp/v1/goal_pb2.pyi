import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Objective(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECTIVE_UNSPECIFIED: _ClassVar[Objective]
    OBJECTIVE_TAIL_LATENCY: _ClassVar[Objective]
    OBJECTIVE_THROUGHPUT: _ClassVar[Objective]
    OBJECTIVE_MAKESPAN: _ClassVar[Objective]

class Comparison(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPARISON_UNSPECIFIED: _ClassVar[Comparison]
    COMPARISON_AT_LEAST: _ClassVar[Comparison]
OBJECTIVE_UNSPECIFIED: Objective
OBJECTIVE_TAIL_LATENCY: Objective
OBJECTIVE_THROUGHPUT: Objective
OBJECTIVE_MAKESPAN: Objective
COMPARISON_UNSPECIFIED: Comparison
COMPARISON_AT_LEAST: Comparison

class GuardConstraint(_message.Message):
    __slots__ = ("metric", "comparison", "ratio_to_baseline", "absolute", "description")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_FIELD_NUMBER: _ClassVar[int]
    RATIO_TO_BASELINE_FIELD_NUMBER: _ClassVar[int]
    ABSOLUTE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    metric: _common_pb2.MetricSpec
    comparison: Comparison
    ratio_to_baseline: float
    absolute: float
    description: str
    def __init__(self, metric: _Optional[_Union[_common_pb2.MetricSpec, _Mapping]] = ..., comparison: _Optional[_Union[Comparison, str]] = ..., ratio_to_baseline: _Optional[float] = ..., absolute: _Optional[float] = ..., description: _Optional[str] = ...) -> None: ...

class OptimizationGoal(_message.Message):
    __slots__ = ("goal_id", "objective", "target_groups", "success_metric", "min_improvement", "guards", "rationale", "intent", "provider", "confidence", "min_window")
    GOAL_ID_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    TARGET_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_WINDOW_FIELD_NUMBER: _ClassVar[int]
    goal_id: str
    objective: Objective
    target_groups: _containers.RepeatedCompositeFieldContainer[_common_pb2.GroupMatcher]
    success_metric: _common_pb2.MetricSpec
    min_improvement: float
    guards: _containers.RepeatedCompositeFieldContainer[GuardConstraint]
    rationale: str
    intent: str
    provider: str
    confidence: float
    min_window: _duration_pb2.Duration
    def __init__(self, goal_id: _Optional[str] = ..., objective: _Optional[_Union[Objective, str]] = ..., target_groups: _Optional[_Iterable[_Union[_common_pb2.GroupMatcher, _Mapping]]] = ..., success_metric: _Optional[_Union[_common_pb2.MetricSpec, _Mapping]] = ..., min_improvement: _Optional[float] = ..., guards: _Optional[_Iterable[_Union[GuardConstraint, _Mapping]]] = ..., rationale: _Optional[str] = ..., intent: _Optional[str] = ..., provider: _Optional[str] = ..., confidence: _Optional[float] = ..., min_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
