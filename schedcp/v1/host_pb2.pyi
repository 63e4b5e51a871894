import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchedExtState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHED_EXT_STATE_UNSPECIFIED: _ClassVar[SchedExtState]
    SCHED_EXT_STATE_UNSUPPORTED: _ClassVar[SchedExtState]
    SCHED_EXT_STATE_DISABLED: _ClassVar[SchedExtState]
    SCHED_EXT_STATE_ENABLING: _ClassVar[SchedExtState]
    SCHED_EXT_STATE_ENABLED: _ClassVar[SchedExtState]
    SCHED_EXT_STATE_DISABLING: _ClassVar[SchedExtState]
SCHED_EXT_STATE_UNSPECIFIED: SchedExtState
SCHED_EXT_STATE_UNSUPPORTED: SchedExtState
SCHED_EXT_STATE_DISABLED: SchedExtState
SCHED_EXT_STATE_ENABLING: SchedExtState
SCHED_EXT_STATE_ENABLED: SchedExtState
SCHED_EXT_STATE_DISABLING: SchedExtState

class SchedExtInfo(_message.Message):
    __slots__ = ("state", "ops_name", "enable_seq", "nr_rejected")
    STATE_FIELD_NUMBER: _ClassVar[int]
    OPS_NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    NR_REJECTED_FIELD_NUMBER: _ClassVar[int]
    state: SchedExtState
    ops_name: str
    enable_seq: int
    nr_rejected: int
    def __init__(self, state: _Optional[_Union[SchedExtState, str]] = ..., ops_name: _Optional[str] = ..., enable_seq: _Optional[int] = ..., nr_rejected: _Optional[int] = ...) -> None: ...

class CpuTopology(_message.Message):
    __slots__ = ("logical_cpus", "physical_cores", "packages", "numa_nodes", "llc_cpulists", "model_name")
    LOGICAL_CPUS_FIELD_NUMBER: _ClassVar[int]
    PHYSICAL_CORES_FIELD_NUMBER: _ClassVar[int]
    PACKAGES_FIELD_NUMBER: _ClassVar[int]
    NUMA_NODES_FIELD_NUMBER: _ClassVar[int]
    LLC_CPULISTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    logical_cpus: int
    physical_cores: int
    packages: int
    numa_nodes: int
    llc_cpulists: _containers.RepeatedScalarFieldContainer[str]
    model_name: str
    def __init__(self, logical_cpus: _Optional[int] = ..., physical_cores: _Optional[int] = ..., packages: _Optional[int] = ..., numa_nodes: _Optional[int] = ..., llc_cpulists: _Optional[_Iterable[str]] = ..., model_name: _Optional[str] = ...) -> None: ...

class CgroupInfo(_message.Message):
    __slots__ = ("version", "cpu_controller_path", "cpu_controller_version", "cpu_idle_supported")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_CONTROLLER_PATH_FIELD_NUMBER: _ClassVar[int]
    CPU_CONTROLLER_VERSION_FIELD_NUMBER: _ClassVar[int]
    CPU_IDLE_SUPPORTED_FIELD_NUMBER: _ClassVar[int]
    version: int
    cpu_controller_path: str
    cpu_controller_version: int
    cpu_idle_supported: bool
    def __init__(self, version: _Optional[int] = ..., cpu_controller_path: _Optional[str] = ..., cpu_controller_version: _Optional[int] = ..., cpu_idle_supported: _Optional[bool] = ...) -> None: ...

class Privileges(_message.Message):
    __slots__ = ("is_root", "capabilities")
    IS_ROOT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    is_root: bool
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, is_root: _Optional[bool] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class HostFacts(_message.Message):
    __slots__ = ("host_id", "hostname", "kernel_release", "arch", "cpu", "memory_bytes", "sched_ext", "cgroup", "btf_present", "btf_sha256", "privileges", "backends", "observer_modes", "collected_at")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    KERNEL_RELEASE_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCHED_EXT_FIELD_NUMBER: _ClassVar[int]
    CGROUP_FIELD_NUMBER: _ClassVar[int]
    BTF_PRESENT_FIELD_NUMBER: _ClassVar[int]
    BTF_SHA256_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGES_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    OBSERVER_MODES_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    hostname: str
    kernel_release: str
    arch: str
    cpu: CpuTopology
    memory_bytes: int
    sched_ext: SchedExtInfo
    cgroup: CgroupInfo
    btf_present: bool
    btf_sha256: str
    privileges: Privileges
    backends: _containers.RepeatedScalarFieldContainer[str]
    observer_modes: _containers.RepeatedScalarFieldContainer[str]
    collected_at: _timestamp_pb2.Timestamp
    def __init__(self, host_id: _Optional[str] = ..., hostname: _Optional[str] = ..., kernel_release: _Optional[str] = ..., arch: _Optional[str] = ..., cpu: _Optional[_Union[CpuTopology, _Mapping]] = ..., memory_bytes: _Optional[int] = ..., sched_ext: _Optional[_Union[SchedExtInfo, _Mapping]] = ..., cgroup: _Optional[_Union[CgroupInfo, _Mapping]] = ..., btf_present: _Optional[bool] = ..., btf_sha256: _Optional[str] = ..., privileges: _Optional[_Union[Privileges, _Mapping]] = ..., backends: _Optional[_Iterable[str]] = ..., observer_modes: _Optional[_Iterable[str]] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class HostRegistration(_message.Message):
    __slots__ = ("host_id", "observer_addr", "executor_addr", "facts", "version", "registered_at", "last_seen", "workload_cluster")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVER_ADDR_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_ADDR_FIELD_NUMBER: _ClassVar[int]
    FACTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    observer_addr: str
    executor_addr: str
    facts: HostFacts
    version: str
    registered_at: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    workload_cluster: str
    def __init__(self, host_id: _Optional[str] = ..., observer_addr: _Optional[str] = ..., executor_addr: _Optional[str] = ..., facts: _Optional[_Union[HostFacts, _Mapping]] = ..., version: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., workload_cluster: _Optional[str] = ...) -> None: ...
