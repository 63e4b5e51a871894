import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import deployment_pb2 as _deployment_pb2
from schedcp.v1 import goal_pb2 as _goal_pb2
from schedcp.v1 import policy_pb2 as _policy_pb2
from schedcp.v1 import profile_pb2 as _profile_pb2
from schedcp.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CycleStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CYCLE_STAGE_UNSPECIFIED: _ClassVar[CycleStage]
    CYCLE_STAGE_OBSERVE: _ClassVar[CycleStage]
    CYCLE_STAGE_GOAL: _ClassVar[CycleStage]
    CYCLE_STAGE_CANDIDATES: _ClassVar[CycleStage]
    CYCLE_STAGE_VERIFY: _ClassVar[CycleStage]
    CYCLE_STAGE_DEPLOY: _ClassVar[CycleStage]
    CYCLE_STAGE_MEASURE: _ClassVar[CycleStage]
    CYCLE_STAGE_LEARN: _ClassVar[CycleStage]
    CYCLE_STAGE_RESULT: _ClassVar[CycleStage]

class SynthesisPath(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYNTHESIS_PATH_UNSPECIFIED: _ClassVar[SynthesisPath]
    SYNTHESIS_PATH_REUSE: _ClassVar[SynthesisPath]
    SYNTHESIS_PATH_TUNE: _ClassVar[SynthesisPath]
    SYNTHESIS_PATH_GENERATE: _ClassVar[SynthesisPath]
CYCLE_STAGE_UNSPECIFIED: CycleStage
CYCLE_STAGE_OBSERVE: CycleStage
CYCLE_STAGE_GOAL: CycleStage
CYCLE_STAGE_CANDIDATES: CycleStage
CYCLE_STAGE_VERIFY: CycleStage
CYCLE_STAGE_DEPLOY: CycleStage
CYCLE_STAGE_MEASURE: CycleStage
CYCLE_STAGE_LEARN: CycleStage
CYCLE_STAGE_RESULT: CycleStage
SYNTHESIS_PATH_UNSPECIFIED: SynthesisPath
SYNTHESIS_PATH_REUSE: SynthesisPath
SYNTHESIS_PATH_TUNE: SynthesisPath
SYNTHESIS_PATH_GENERATE: SynthesisPath

class Candidate(_message.Message):
    __slots__ = ("artifact", "path", "expected_improvement", "confidence", "rationale", "evidence")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    artifact: _policy_pb2.PolicyArtifact
    path: SynthesisPath
    expected_improvement: float
    confidence: float
    rationale: str
    evidence: _deployment_pb2.MetricComparison
    def __init__(self, artifact: _Optional[_Union[_policy_pb2.PolicyArtifact, _Mapping]] = ..., path: _Optional[_Union[SynthesisPath, str]] = ..., expected_improvement: _Optional[float] = ..., confidence: _Optional[float] = ..., rationale: _Optional[str] = ..., evidence: _Optional[_Union[_deployment_pb2.MetricComparison, _Mapping]] = ...) -> None: ...

class CandidateList(_message.Message):
    __slots__ = ("candidates", "chosen")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    chosen: int
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., chosen: _Optional[int] = ...) -> None: ...

class LlmUsage(_message.Message):
    __slots__ = ("calls", "input_tokens", "output_tokens", "cost_usd")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    def __init__(self, calls: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class CycleEvent(_message.Message):
    __slots__ = ("cycle_id", "host_id", "stage", "status", "message", "at", "trace_id", "llm_usage", "profile", "goal", "candidates", "verdict", "deployment", "outcome")
    CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    LLM_USAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    cycle_id: str
    host_id: str
    stage: CycleStage
    status: _common_pb2.StageStatus
    message: str
    at: _timestamp_pb2.Timestamp
    trace_id: str
    llm_usage: LlmUsage
    profile: _profile_pb2.WorkloadProfile
    goal: _goal_pb2.OptimizationGoal
    candidates: CandidateList
    verdict: _verdict_pb2.Verdict
    deployment: _deployment_pb2.DeploymentEvent
    outcome: _deployment_pb2.Outcome
    def __init__(self, cycle_id: _Optional[str] = ..., host_id: _Optional[str] = ..., stage: _Optional[_Union[CycleStage, str]] = ..., status: _Optional[_Union[_common_pb2.StageStatus, str]] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., llm_usage: _Optional[_Union[LlmUsage, _Mapping]] = ..., profile: _Optional[_Union[_profile_pb2.WorkloadProfile, _Mapping]] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ..., candidates: _Optional[_Union[CandidateList, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ..., deployment: _Optional[_Union[_deployment_pb2.DeploymentEvent, _Mapping]] = ..., outcome: _Optional[_Union[_deployment_pb2.Outcome, _Mapping]] = ...) -> None: ...
