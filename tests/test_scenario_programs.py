"""The scenario suite reads the programs' own reports: these are their real formats, copied
from the Debian versions the suite runs (bookworm on the host, trixie in the VM)."""

from __future__ import annotations

import pytest

from bench.scenarios import programs

# stress-ng 0.19.02 (trixie) puts `source-date-epoch` at the wrong indent: not valid YAML.
STRESS_NG_0_19 = """---
build-info:
      compiler: 'gcc 14.2.0'
source-date-epoch: 1751354863
      stdc-version: '199901L'

system-info:
      stress-ng-version: '0.19.02'
      cpus: 2

metrics:
    - stressor: cpu
      bogo-ops: 1362
      bogo-ops-per-second-usr-sys-time: 1361.504412
      bogo-ops-per-second-real-time: 1354.426225
      wall-clock-time: 1.005592
    - stressor: cpu
      bogo-ops: 1000
      bogo-ops-per-second-real-time: 1000.5
...
"""
# stress-ng 0.15 (bookworm): valid YAML.
STRESS_NG_0_15 = """---
system-info:
      stress-ng-version: 0.15.06
metrics:
    - stressor: cpu
      bogo-ops: 2000
      bogo-ops-per-second-real-time: 1999.5
...
"""


@pytest.mark.parametrize(("report", "ops"), [(STRESS_NG_0_19, 2354.926225), (STRESS_NG_0_15, 1999.5)],
                         ids=["trixie", "bookworm"])
def test_stress_ng_reports_give_the_bogo_ops_per_second(tmp_path, report, ops):
    path = tmp_path / "stress.yaml"
    path.write_text(report)
    assert programs.stress_ops_per_s(path) == pytest.approx(ops)



@pytest.mark.parametrize("busy", [False, True])
def test_a_batch_loop_counts_the_cpu_its_runs_used_not_the_time_they_waited(tmp_path, busy):
    """A loop of sleeps used almost no CPU however long it ran; a loop of hashing used a good
    part of a CPU (the runs are the shell's children: wait4 counts them because it waited)."""
    data = tmp_path / "data"
    data.write_bytes(bytes(range(256)) * 40000)
    procs = programs.Processes()
    try:
        loop = programs.Loop(procs, f"sha256sum {data}" if busy else "sleep 0.2", 1.0)
        per_s = loop.cpu_per_s(timeout_s=30)
    finally:
        procs.stop()
    assert loop.proc.returncode == 0
    assert (per_s > 0.2) if busy else (per_s < 0.05), per_s
