import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERIFY_STAGE_UNSPECIFIED: _ClassVar[VerifyStage]
    VERIFY_STAGE_STATIC: _ClassVar[VerifyStage]
    VERIFY_STAGE_COMPILE: _ClassVar[VerifyStage]
    VERIFY_STAGE_KERNEL_VERIFIER: _ClassVar[VerifyStage]
    VERIFY_STAGE_DYNAMIC: _ClassVar[VerifyStage]
    VERIFY_STAGE_NATIVE_CHECKS: _ClassVar[VerifyStage]
    VERIFY_STAGE_SIGN: _ClassVar[VerifyStage]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_ERROR: _ClassVar[Severity]
VERIFY_STAGE_UNSPECIFIED: VerifyStage
VERIFY_STAGE_STATIC: VerifyStage
VERIFY_STAGE_COMPILE: VerifyStage
VERIFY_STAGE_KERNEL_VERIFIER: VerifyStage
VERIFY_STAGE_DYNAMIC: VerifyStage
VERIFY_STAGE_NATIVE_CHECKS: VerifyStage
VERIFY_STAGE_SIGN: VerifyStage
SEVERITY_UNSPECIFIED: Severity
SEVERITY_WARNING: Severity
SEVERITY_ERROR: Severity

class Finding(_message.Message):
    __slots__ = ("rule_id", "severity", "line", "column", "message", "hint")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    severity: Severity
    line: int
    column: int
    message: str
    hint: str
    def __init__(self, rule_id: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., line: _Optional[int] = ..., column: _Optional[int] = ..., message: _Optional[str] = ..., hint: _Optional[str] = ...) -> None: ...

class StageResult(_message.Message):
    __slots__ = ("stage", "status", "duration", "findings", "log", "measurements")
    class MeasurementsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    stage: VerifyStage
    status: _common_pb2.StageStatus
    duration: _duration_pb2.Duration
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    log: str
    measurements: _containers.ScalarMap[str, float]
    def __init__(self, stage: _Optional[_Union[VerifyStage, str]] = ..., status: _Optional[_Union[_common_pb2.StageStatus, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., log: _Optional[str] = ..., measurements: _Optional[_Mapping[str, float]] = ...) -> None: ...

class TargetKernel(_message.Message):
    __slots__ = ("release", "btf_sha256", "arch")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    BTF_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    release: str
    btf_sha256: str
    arch: str
    def __init__(self, release: _Optional[str] = ..., btf_sha256: _Optional[str] = ..., arch: _Optional[str] = ...) -> None: ...

class VerdictClaims(_message.Message):
    __slots__ = ("verdict_id", "artifact_digest", "kernel", "approved", "stages_passed", "issued_at", "expires_at", "key_id", "rules", "request_digest")
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    STAGES_PASSED_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    verdict_id: str
    artifact_digest: str
    kernel: TargetKernel
    approved: bool
    stages_passed: _containers.RepeatedScalarFieldContainer[VerifyStage]
    issued_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    key_id: str
    rules: str
    request_digest: str
    def __init__(self, verdict_id: _Optional[str] = ..., artifact_digest: _Optional[str] = ..., kernel: _Optional[_Union[TargetKernel, _Mapping]] = ..., approved: _Optional[bool] = ..., stages_passed: _Optional[_Iterable[_Union[VerifyStage, str]]] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., rules: _Optional[str] = ..., request_digest: _Optional[str] = ...) -> None: ...

class SignedVerdict(_message.Message):
    __slots__ = ("claims", "signature", "key_id")
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    claims: bytes
    signature: bytes
    key_id: str
    def __init__(self, claims: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("signed", "claims", "stages", "cached", "summary", "artifact", "request_digest")
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DIGEST_FIELD_NUMBER: _ClassVar[int]
    signed: SignedVerdict
    claims: VerdictClaims
    stages: _containers.RepeatedCompositeFieldContainer[StageResult]
    cached: bool
    summary: str
    artifact: _policy_pb2.PolicyArtifact
    request_digest: str
    def __init__(self, signed: _Optional[_Union[SignedVerdict, _Mapping]] = ..., claims: _Optional[_Union[VerdictClaims, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageResult, _Mapping]]] = ..., cached: _Optional[bool] = ..., summary: _Optional[str] = ..., artifact: _Optional[_Union[_policy_pb2.PolicyArtifact, _Mapping]] = ..., request_digest: _Optional[str] = ...) -> None: ...
