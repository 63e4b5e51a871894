from schedcp.v1 import common_pb2 as _common_pb2
from schedcp.v1 import policy_pb2 as _policy_pb2
from schedcp.v1 import verdict_pb2 as _verdict_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VerifyRequest(_message.Message):
    __slots__ = ("artifact", "target", "no_cache")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    artifact: _policy_pb2.PolicyArtifact
    target: _verdict_pb2.TargetKernel
    no_cache: bool
    def __init__(self, artifact: _Optional[_Union[_policy_pb2.PolicyArtifact, _Mapping]] = ..., target: _Optional[_Union[_verdict_pb2.TargetKernel, _Mapping]] = ..., no_cache: _Optional[bool] = ...) -> None: ...

class VerifyProgress(_message.Message):
    __slots__ = ("stage", "status", "message", "result", "verdict")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    stage: _verdict_pb2.VerifyStage
    status: _common_pb2.StageStatus
    message: str
    result: _verdict_pb2.StageResult
    verdict: _verdict_pb2.Verdict
    def __init__(self, stage: _Optional[_Union[_verdict_pb2.VerifyStage, str]] = ..., status: _Optional[_Union[_common_pb2.StageStatus, str]] = ..., message: _Optional[str] = ..., result: _Optional[_Union[_verdict_pb2.StageResult, _Mapping]] = ..., verdict: _Optional[_Union[_verdict_pb2.Verdict, _Mapping]] = ...) -> None: ...

class GetVerdictRequest(_message.Message):
    __slots__ = ("verdict_id",)
    VERDICT_ID_FIELD_NUMBER: _ClassVar[int]
    verdict_id: str
    def __init__(self, verdict_id: _Optional[str] = ...) -> None: ...

class GetTrustKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustKey(_message.Message):
    __slots__ = ("algorithm", "public_key", "key_id")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    public_key: bytes
    key_id: str
    def __init__(self, algorithm: _Optional[str] = ..., public_key: _Optional[bytes] = ..., key_id: _Optional[str] = ...) -> None: ...
