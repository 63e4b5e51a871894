from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import deployment_pb2 as _deployment_pb2
from schedcp.v1 import goal_pb2 as _goal_pb2
from schedcp.v1 import host_pb2 as _host_pb2
from schedcp.v1 import policy_pb2 as _policy_pb2
from schedcp.v1 import verdict_pb2 as _verdict_pb2
from schedcp.v1 import profile_pb2 as _profile_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchPoliciesRequest(_message.Message):
    __slots__ = ("signature", "host", "goal", "limit")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    signature: _profile_pb2.WorkloadSignature
    host: _host_pb2.HostFacts
    goal: _goal_pb2.OptimizationGoal
    limit: int
    def __init__(self, signature: _Optional[_Union[_profile_pb2.WorkloadSignature, _Mapping]] = ..., host: _Optional[_Union[_host_pb2.HostFacts, _Mapping]] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class PolicyMatch(_message.Message):
    __slots__ = ("policy", "expected_improvement", "confidence", "similarity", "reason", "goal", "parameters", "evidence")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    policy: _policy_pb2.PolicyRecord
    expected_improvement: float
    confidence: float
    similarity: float
    reason: str
    goal: _goal_pb2.OptimizationGoal
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    evidence: _deployment_pb2.MetricComparison
    def __init__(self, policy: _Optional[_Union[_policy_pb2.PolicyRecord, _Mapping]] = ..., expected_improvement: _Optional[float] = ..., confidence: _Optional[float] = ..., similarity: _Optional[float] = ..., reason: _Optional[str] = ..., goal: _Optional[_Union[_goal_pb2.OptimizationGoal, _Mapping]] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., evidence: _Optional[_Union[_deployment_pb2.MetricComparison, _Mapping]] = ...) -> None: ...

class AntiPattern(_message.Message):
    __slots__ = ("policy_name", "parameters_key", "reason", "regressions", "ejections")
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REGRESSIONS_FIELD_NUMBER: _ClassVar[int]
    EJECTIONS_FIELD_NUMBER: _ClassVar[int]
    policy_name: str
    parameters_key: str
    reason: str
    regressions: int
    ejections: int
    def __init__(self, policy_name: _Optional[str] = ..., parameters_key: _Optional[str] = ..., reason: _Optional[str] = ..., regressions: _Optional[int] = ..., ejections: _Optional[int] = ...) -> None: ...

class SearchPoliciesResponse(_message.Message):
    __slots__ = ("matches", "avoid")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    AVOID_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[PolicyMatch]
    avoid: _containers.RepeatedCompositeFieldContainer[AntiPattern]
    def __init__(self, matches: _Optional[_Iterable[_Union[PolicyMatch, _Mapping]]] = ..., avoid: _Optional[_Iterable[_Union[AntiPattern, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: _policy_pb2.PolicyKind
    def __init__(self, kind: _Optional[_Union[_policy_pb2.PolicyKind, str]] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[_policy_pb2.PolicyRecord]
    def __init__(self, policies: _Optional[_Iterable[_Union[_policy_pb2.PolicyRecord, _Mapping]]] = ...) -> None: ...

class PutPolicyRequest(_message.Message):
    __slots__ = ("artifact", "metadata", "verdict")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    artifact: _policy_pb2.PolicyArtifact
    metadata: _policy_pb2.PolicyMetadata
    verdict: _verdict_pb2.SignedVerdict
    def __init__(self, artifact: _Optional[_Union[_policy_pb2.PolicyArtifact, _Mapping]] = ..., metadata: _Optional[_Union[_policy_pb2.PolicyMetadata, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.SignedVerdict, _Mapping]] = ...) -> None: ...

class PutPolicyResponse(_message.Message):
    __slots__ = ("policy", "created")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    policy: _policy_pb2.PolicyRecord
    created: bool
    def __init__(self, policy: _Optional[_Union[_policy_pb2.PolicyRecord, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class LearnerHistoryRequest(_message.Message):
    __slots__ = ("policy_name", "host_id", "limit")
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    policy_name: str
    host_id: str
    limit: int
    def __init__(self, policy_name: _Optional[str] = ..., host_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class LearnerHistoryResponse(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[_deployment_pb2.Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[_deployment_pb2.Outcome, _Mapping]]] = ...) -> None: ...
