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

class PolicyKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_KIND_UNSPECIFIED: _ClassVar[PolicyKind]
    POLICY_KIND_SCHED_EXT: _ClassVar[PolicyKind]
    POLICY_KIND_NATIVE: _ClassVar[PolicyKind]

class PolicyOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_ORIGIN_UNSPECIFIED: _ClassVar[PolicyOrigin]
    POLICY_ORIGIN_LIBRARY: _ClassVar[PolicyOrigin]
    POLICY_ORIGIN_TUNED: _ClassVar[PolicyOrigin]
    POLICY_ORIGIN_LLM_WRITTEN: _ClassVar[PolicyOrigin]
    POLICY_ORIGIN_OPERATOR: _ClassVar[PolicyOrigin]

class ParamType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAM_TYPE_UNSPECIFIED: _ClassVar[ParamType]
    PARAM_TYPE_INT: _ClassVar[ParamType]
    PARAM_TYPE_BOOL: _ClassVar[ParamType]
    PARAM_TYPE_STRING: _ClassVar[ParamType]

class SchedPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHED_POLICY_UNSPECIFIED: _ClassVar[SchedPolicy]
    SCHED_POLICY_OTHER: _ClassVar[SchedPolicy]
    SCHED_POLICY_BATCH: _ClassVar[SchedPolicy]
    SCHED_POLICY_IDLE: _ClassVar[SchedPolicy]
    SCHED_POLICY_FIFO: _ClassVar[SchedPolicy]
    SCHED_POLICY_RR: _ClassVar[SchedPolicy]
POLICY_KIND_UNSPECIFIED: PolicyKind
POLICY_KIND_SCHED_EXT: PolicyKind
POLICY_KIND_NATIVE: PolicyKind
POLICY_ORIGIN_UNSPECIFIED: PolicyOrigin
POLICY_ORIGIN_LIBRARY: PolicyOrigin
POLICY_ORIGIN_TUNED: PolicyOrigin
POLICY_ORIGIN_LLM_WRITTEN: PolicyOrigin
POLICY_ORIGIN_OPERATOR: PolicyOrigin
PARAM_TYPE_UNSPECIFIED: ParamType
PARAM_TYPE_INT: ParamType
PARAM_TYPE_BOOL: ParamType
PARAM_TYPE_STRING: ParamType
SCHED_POLICY_UNSPECIFIED: SchedPolicy
SCHED_POLICY_OTHER: SchedPolicy
SCHED_POLICY_BATCH: SchedPolicy
SCHED_POLICY_IDLE: SchedPolicy
SCHED_POLICY_FIFO: SchedPolicy
SCHED_POLICY_RR: SchedPolicy

class ParameterSpec(_message.Message):
    __slots__ = ("name", "type", "description", "default_value", "min", "max", "options", "unit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParamType
    description: str
    default_value: _common_pb2.ParamValue
    min: float
    max: float
    options: _containers.RepeatedScalarFieldContainer[str]
    unit: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParamType, str]] = ..., description: _Optional[str] = ..., default_value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., options: _Optional[_Iterable[str]] = ..., unit: _Optional[str] = ...) -> None: ...

class KernelRequirements(_message.Message):
    __slots__ = ("min_kernel", "needs_sched_ext", "kfuncs")
    MIN_KERNEL_FIELD_NUMBER: _ClassVar[int]
    NEEDS_SCHED_EXT_FIELD_NUMBER: _ClassVar[int]
    KFUNCS_FIELD_NUMBER: _ClassVar[int]
    min_kernel: str
    needs_sched_ext: bool
    kfuncs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, min_kernel: _Optional[str] = ..., needs_sched_ext: _Optional[bool] = ..., kfuncs: _Optional[_Iterable[str]] = ...) -> None: ...

class PolicyMetadata(_message.Message):
    __slots__ = ("name", "kind", "description", "algorithm", "use_cases", "parameters", "requirements", "limitations", "goals")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    USE_CASES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    LIMITATIONS_FIELD_NUMBER: _ClassVar[int]
    GOALS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PolicyKind
    description: str
    algorithm: str
    use_cases: _containers.RepeatedScalarFieldContainer[str]
    parameters: _containers.RepeatedCompositeFieldContainer[ParameterSpec]
    requirements: KernelRequirements
    limitations: _containers.RepeatedScalarFieldContainer[str]
    goals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PolicyKind, str]] = ..., description: _Optional[str] = ..., algorithm: _Optional[str] = ..., use_cases: _Optional[_Iterable[str]] = ..., parameters: _Optional[_Iterable[_Union[ParameterSpec, _Mapping]]] = ..., requirements: _Optional[_Union[KernelRequirements, _Mapping]] = ..., limitations: _Optional[_Iterable[str]] = ..., goals: _Optional[_Iterable[str]] = ...) -> None: ...

class SchedExtProgram(_message.Message):
    __slots__ = ("source", "object", "ops_name", "goals")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    OPS_NAME_FIELD_NUMBER: _ClassVar[int]
    GOALS_FIELD_NUMBER: _ClassVar[int]
    source: str
    object: bytes
    ops_name: str
    goals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., object: _Optional[bytes] = ..., ops_name: _Optional[str] = ..., goals: _Optional[_Iterable[str]] = ...) -> None: ...

class NativeRule(_message.Message):
    __slots__ = ("match", "policy", "nice", "slice_us", "rt_priority", "cgroup_cpu_idle", "cgroup_cpu_weight", "cpus", "description")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    SLICE_US_FIELD_NUMBER: _ClassVar[int]
    RT_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    CGROUP_CPU_IDLE_FIELD_NUMBER: _ClassVar[int]
    CGROUP_CPU_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    match: _containers.RepeatedCompositeFieldContainer[_common_pb2.GroupMatcher]
    policy: SchedPolicy
    nice: int
    slice_us: int
    rt_priority: int
    cgroup_cpu_idle: bool
    cgroup_cpu_weight: int
    cpus: str
    description: str
    def __init__(self, match: _Optional[_Iterable[_Union[_common_pb2.GroupMatcher, _Mapping]]] = ..., policy: _Optional[_Union[SchedPolicy, str]] = ..., nice: _Optional[int] = ..., slice_us: _Optional[int] = ..., rt_priority: _Optional[int] = ..., cgroup_cpu_idle: _Optional[bool] = ..., cgroup_cpu_weight: _Optional[int] = ..., cpus: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class NativePolicy(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[NativeRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[NativeRule, _Mapping]]] = ...) -> None: ...

class PolicyArtifact(_message.Message):
    __slots__ = ("name", "version", "kind", "sched_ext", "native", "parameters", "digest", "origin", "origin_cycle_id")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _common_pb2.ParamValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_common_pb2.ParamValue, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCHED_EXT_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: PolicyKind
    sched_ext: SchedExtProgram
    native: NativePolicy
    parameters: _containers.MessageMap[str, _common_pb2.ParamValue]
    digest: str
    origin: PolicyOrigin
    origin_cycle_id: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[_Union[PolicyKind, str]] = ..., sched_ext: _Optional[_Union[SchedExtProgram, _Mapping]] = ..., native: _Optional[_Union[NativePolicy, _Mapping]] = ..., parameters: _Optional[_Mapping[str, _common_pb2.ParamValue]] = ..., digest: _Optional[str] = ..., origin: _Optional[_Union[PolicyOrigin, str]] = ..., origin_cycle_id: _Optional[str] = ...) -> None: ...

class EffectStats(_message.Message):
    __slots__ = ("parameters_key", "signature_cluster", "host_class", "count", "mean_improvement", "stddev_improvement", "rollbacks", "ejections", "proven")
    PARAMETERS_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    HOST_CLASS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    STDDEV_IMPROVEMENT_FIELD_NUMBER: _ClassVar[int]
    ROLLBACKS_FIELD_NUMBER: _ClassVar[int]
    EJECTIONS_FIELD_NUMBER: _ClassVar[int]
    PROVEN_FIELD_NUMBER: _ClassVar[int]
    parameters_key: str
    signature_cluster: str
    host_class: str
    count: int
    mean_improvement: float
    stddev_improvement: float
    rollbacks: int
    ejections: int
    proven: bool
    def __init__(self, parameters_key: _Optional[str] = ..., signature_cluster: _Optional[str] = ..., host_class: _Optional[str] = ..., count: _Optional[int] = ..., mean_improvement: _Optional[float] = ..., stddev_improvement: _Optional[float] = ..., rollbacks: _Optional[int] = ..., ejections: _Optional[int] = ..., proven: _Optional[bool] = ...) -> None: ...

class PolicyRecord(_message.Message):
    __slots__ = ("metadata", "version", "origin", "origin_cycle_id", "artifact_digest", "verdict_ids", "effects", "created_at", "updated_at")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_CYCLE_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERDICT_IDS_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    metadata: PolicyMetadata
    version: str
    origin: PolicyOrigin
    origin_cycle_id: str
    artifact_digest: str
    verdict_ids: _containers.RepeatedScalarFieldContainer[str]
    effects: _containers.RepeatedCompositeFieldContainer[EffectStats]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, metadata: _Optional[_Union[PolicyMetadata, _Mapping]] = ..., version: _Optional[str] = ..., origin: _Optional[_Union[PolicyOrigin, str]] = ..., origin_cycle_id: _Optional[str] = ..., artifact_digest: _Optional[str] = ..., verdict_ids: _Optional[_Iterable[str]] = ..., effects: _Optional[_Iterable[_Union[EffectStats, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
