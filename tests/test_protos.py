"""The committed stubs in schedcp/v1 are exactly what protos/ generates."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "schedcp" / "v1"


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)], check=True)
    fresh = tmp_path / "schedcp" / "v1"
    fresh_names = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_names = sorted(p.name for p in COMMITTED.iterdir() if p.is_file())
    assert fresh_names == committed_names, "files differ: run `make protos` and commit"
    _, mismatch, errors = filecmp.cmpfiles(COMMITTED, fresh, fresh_names, shallow=False)
    assert not mismatch and not errors, f"stale generated code {mismatch}: run `make protos` and commit"


def test_every_service_contract_is_importable_and_has_one_service() -> None:
    from schedcp.v1 import (
        executor_pb2,
        info_pb2,
        learner_pb2,
        observer_pb2,
        planner_pb2,
        verifier_pb2,
    )

    names = [m.DESCRIPTOR.services_by_name for m in
             (executor_pb2, info_pb2, learner_pb2, observer_pb2, planner_pb2, verifier_pb2)]
    assert [list(n) for n in names] == [["ExecutorService"], ["InfoService"], ["LearnerService"],
                                        ["ObserverService"], ["PlannerService"], ["VerifierService"]]
