import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import goal_pb2 as _goal_pb2
from schedcp.v1 import profile_pb2 as _profile_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_CHECKING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_BASELINE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_APPLYING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_CANARY: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_KEPT: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLED_BACK: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_EJECTED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_REFUSED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]

class DeploymentFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_FAILURE_UNSPECIFIED: _ClassVar[DeploymentFailure]
    DEPLOYMENT_FAILURE_NOT_APPLIED: _ClassVar[DeploymentFailure]
    DEPLOYMENT_FAILURE_NOT_MEASURED: _ClassVar[DeploymentFailure]
    DEPLOYMENT_FAILURE_DEPENDENCY: _ClassVar[DeploymentFailure]

class OutcomeResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_RESULT_UNSPECIFIED: _ClassVar[OutcomeResult]
    OUTCOME_RESULT_KEPT: _ClassVar[OutcomeResult]
    OUTCOME_RESULT_ROLLED_BACK: _ClassVar[OutcomeResult]
    OUTCOME_RESULT_EJECTED: _ClassVar[OutcomeResult]

class AuditAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_ACTION_UNSPECIFIED: _ClassVar[AuditAction]
    AUDIT_ACTION_DEPLOY: _ClassVar[AuditAction]
    AUDIT_ACTION_KEEP: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLBACK: _ClassVar[AuditAction]
    AUDIT_ACTION_REFUSE: _ClassVar[AuditAction]
    AUDIT_ACTION_EJECT: _ClassVar[AuditAction]
    AUDIT_ACTION_FAIL: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_START: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_WAVE: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_HALT: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_PAUSE: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_RESUME: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_ABORT: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_COMPLETE: _ClassVar[AuditAction]
    AUDIT_ACTION_ROLLOUT_PROPOSE: _ClassVar[AuditAction]
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_CHECKING: DeploymentState
DEPLOYMENT_STATE_BASELINE: DeploymentState
DEPLOYMENT_STATE_APPLYING: DeploymentState
DEPLOYMENT_STATE_CANARY: DeploymentState
DEPLOYMENT_STATE_KEPT: DeploymentState
DEPLOYMENT_STATE_ROLLED_BACK: DeploymentState
DEPLOYMENT_STATE_EJECTED: DeploymentState
DEPLOYMENT_STATE_REFUSED: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState
DEPLOYMENT_FAILURE_UNSPECIFIED: DeploymentFailure
DEPLOYMENT_FAILURE_NOT_APPLIED: DeploymentFailure
DEPLOYMENT_FAILURE_NOT_MEASURED: DeploymentFailure
DEPLOYMENT_FAILURE_DEPENDENCY: DeploymentFailure
OUTCOME_RESULT_UNSPECIFIED: OutcomeResult
OUTCOME_RESULT_KEPT: OutcomeResult
OUTCOME_RESULT_ROLLED_BACK: OutcomeResult
OUTCOME_RESULT_EJECTED: OutcomeResult
AUDIT_ACTION_UNSPECIFIED: AuditAction
AUDIT_ACTION_DEPLOY: AuditAction
AUDIT_ACTION_KEEP: AuditAction
AUDIT_ACTION_ROLLBACK: AuditAction
AUDIT_ACTION_REFUSE: AuditAction
AUDIT_ACTION_EJECT: AuditAction
AUDIT_ACTION_FAIL: AuditAction
AUDIT_ACTION_ROLLOUT_START: AuditAction
AUDIT_ACTION_ROLLOUT_WAVE: AuditAction
AUDIT_ACTION_ROLLOUT_HALT: AuditAction
AUDIT_ACTION_ROLLOUT_PAUSE: AuditAction
AUDIT_ACTION_ROLLOUT_RESUME: AuditAction
AUDIT_ACTION_ROLLOUT_ABORT: AuditAction
AUDIT_ACTION_ROLLOUT_COMPLETE: AuditAction
AUDIT_ACTION_ROLLOUT_PROPOSE: AuditAction

class CanarySpec(_message.Message):
    __slots__ = ("baseline_window", "canary_window", "success_metric", "min_improvement", "guards", "report_only", "rounds", "max_rounds", "prior")
    BASELINE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    CANARY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_METRIC_FIELD_NUMBER: _ClassVar[int]
    MIN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    REPORT_ONLY_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FIELD_NUMBER: _ClassVar[int]
    baseline_window: _duration_pb2.Duration
    canary_window: _duration_pb2.Duration
    success_metric: _common_pb2.MetricSpec
    min_improvement: float
    guards: _containers.RepeatedCompositeFieldContainer[_goal_pb2.GuardConstraint]
    report_only: bool
    rounds: int
    max_rounds: int
    prior: MetricComparison
    def __init__(self, baseline_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., canary_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., success_metric: _Optional[_Union[_common_pb2.MetricSpec, _Mapping]] = ..., min_improvement: _Optional[float] = ..., guards: _Optional[_Iterable[_Union[_goal_pb2.GuardConstraint, _Mapping]]] = ..., report_only: _Optional[bool] = ..., rounds: _Optional[int] = ..., max_rounds: _Optional[int] = ..., prior: _Optional[_Union[MetricComparison, _Mapping]] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("deployment_id", "host_id", "cycle_id", "policy_name", "artifact_digest", "verdict_id", "backend", "state", "reason", "previous_deployment_id", "started_at", "updated_at", "requested_by", "verdict_key_id", "failure")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    VERDICT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    host_id: str
    cycle_id: str
    policy_name: str
    artifact_digest: str
    verdict_id: str
    backend: str
    state: DeploymentState
    reason: str
    previous_deployment_id: str
    started_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    requested_by: str
    verdict_key_id: str
    failure: DeploymentFailure
    def __init__(self, deployment_id: _Optional[str] = ..., host_id: _Optional[str] = ..., cycle_id: _Optional[str] = ..., policy_name: _Optional[str] = ..., artifact_digest: _Optional[str] = ..., verdict_id: _Optional[str] = ..., backend: _Optional[str] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., reason: _Optional[str] = ..., previous_deployment_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requested_by: _Optional[str] = ..., verdict_key_id: _Optional[str] = ..., failure: _Optional[_Union[DeploymentFailure, str]] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ("deployment", "message", "at", "metrics")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    message: str
    at: _timestamp_pb2.Timestamp
    metrics: _containers.RepeatedCompositeFieldContainer[MetricComparison]
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[MetricComparison, _Mapping]]] = ...) -> None: ...

class MetricComparison(_message.Message):
    __slots__ = ("metric", "baseline", "observed", "improvement", "satisfied", "rounds", "improvement_low", "improvement_high", "confidence", "prior_rounds", "degrees_of_freedom")
    METRIC_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    SATISFIED_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_LOW_FIELD_NUMBER: _ClassVar[int]
    IMPROVEMENT_HIGH_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DEGREES_OF_FREEDOM_FIELD_NUMBER: _ClassVar[int]
    metric: _common_pb2.MetricSpec
    baseline: float
    observed: float
    improvement: float
    satisfied: bool
    rounds: int
    improvement_low: float
    improvement_high: float
    confidence: float
    prior_rounds: int
    degrees_of_freedom: float
    def __init__(self, metric: _Optional[_Union[_common_pb2.MetricSpec, _Mapping]] = ..., baseline: _Optional[float] = ..., observed: _Optional[float] = ..., improvement: _Optional[float] = ..., satisfied: _Optional[bool] = ..., rounds: _Optional[int] = ..., improvement_low: _Optional[float] = ..., improvement_high: _Optional[float] = ..., confidence: _Optional[float] = ..., prior_rounds: _Optional[int] = ..., degrees_of_freedom: _Optional[float] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("outcome_id", "cycle_id", "deployment_id", "host_id", "host_class", "policy_name", "artifact_digest", "parameters", "signature", "objective", "success", "guards", "result", "reason", "canary_window", "at", "goal")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    OUTCOME_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_CLASS_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANARY_WINDOW_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    outcome_id: str
    cycle_id: str
    deployment_id: str
    host_id: str
    host_class: str
    policy_name: str
    artifact_digest: str
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    signature: _profile_pb2.WorkloadSignature
    objective: _goal_pb2.Objective
    success: MetricComparison
    guards: _containers.RepeatedCompositeFieldContainer[MetricComparison]
    result: OutcomeResult
    reason: str
    canary_window: _duration_pb2.Duration
    at: _timestamp_pb2.Timestamp
    goal: _goal_pb2.OptimizationGoal
    def __init__(self, outcome_id: _Optional[str] = ..., cycle_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., host_id: _Optional[str] = ..., host_class: _Optional[str] = ..., policy_name: _Optional[str] = ..., artifact_digest: _Optional[str] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., signature: _Optional[_Union[_profile_pb2.WorkloadSignature, _Mapping]] = ..., objective: _Optional[_Union[_goal_pb2.Objective, str]] = ..., success: _Optional[_Union[MetricComparison, _Mapping]] = ..., guards: _Optional[_Iterable[_Union[MetricComparison, _Mapping]]] = ..., result: _Optional[_Union[OutcomeResult, str]] = ..., reason: _Optional[str] = ..., canary_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("record_id", "at", "host_id", "action", "actor", "deployment_id", "cycle_id", "policy_name", "artifact_digest", "verdict_id", "verdict_key_id", "reason", "rollout_id", "trace_id")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    at: _timestamp_pb2.Timestamp
    host_id: str
    action: AuditAction
    actor: str
    deployment_id: str
    cycle_id: str
    policy_name: str
    artifact_digest: str
    verdict_id: str
    verdict_key_id: str
    reason: str
    rollout_id: str
    trace_id: str
    def __init__(self, record_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., host_id: _Optional[str] = ..., action: _Optional[_Union[AuditAction, str]] = ..., actor: _Optional[str] = ..., deployment_id: _Optional[str] = ..., cycle_id: _Optional[str] = ..., policy_name: _Optional[str] = ..., artifact_digest: _Optional[str] = ..., verdict_id: _Optional[str] = ..., verdict_key_id: _Optional[str] = ..., reason: _Optional[str] = ..., rollout_id: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...
