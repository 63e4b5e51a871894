"""What makes a policy's effect transferable between hosts: the one definition of a host's class,
used by the executor (its outcomes carry it), the learner (effects are kept per class and
workload cluster), the planner (rollouts go class by class) and the CLI (`schedcp hosts`).

A host class is the hardware (architecture, logical CPUs, NUMA nodes, last-level caches), the
kernel (release and BTF digest: a sched_ext program is compiled for one BTF) and whether the
kernel has sched_ext, e.g. `x86_64-8cpu-1numa-2llc/6.13.2/btf-3fa2c1d0/sched_ext`. The workload
is the other half of "the same situation": the signature cluster, a coarse cell of the
signature space. Two hosts are in the same class for a rollout when both agree.
"""

from __future__ import annotations

from schedcp.v1 import host_pb2, profile_pb2

# Signatures within this distance per dimension fall into the same cluster.
CLUSTER_STEP = 0.25
BTF_DIGITS = 8


def of(facts: host_pb2.HostFacts) -> str:
    """The class of a host from its facts."""
    cpu = facts.cpu
    llcs = len(cpu.llc_cpulists) or 1
    hardware = f"{facts.arch or 'unknown'}-{cpu.logical_cpus}cpu-{cpu.numa_nodes or 1}numa-{llcs}llc"
    btf = f"btf-{facts.btf_sha256[:BTF_DIGITS]}" if facts.btf_sha256 else "nobtf"
    backend = "sched_ext" if "sched_ext" in facts.backends else "native"
    return f"{hardware}/{facts.kernel_release or 'unknown'}/{btf}/{backend}"


def signature_cluster(signature: profile_pb2.WorkloadSignature) -> str:
    """Coarse cell of the signature space: each value rounded to CLUSTER_STEP."""
    cells = ".".join(str(round(v / CLUSTER_STEP)) for v in signature.values)
    return f"v{signature.version}:{cells}"
