"""`python -m schedcp.toolchain` (`make sandbox`): build every sandbox piece and the policy library."""

from __future__ import annotations

import sys
import time

from schedcp.domain import policies
from schedcp.toolchain.build import BuildError, Toolchain


def main() -> int:
    toolchain = Toolchain()
    started = time.monotonic()
    try:
        print(f"sandbox cache: {toolchain.root}", flush=True)
        kernel = toolchain.kernel()
        print(f"kernel {kernel.release} (BTF {kernel.btf_sha256[:16]}): {kernel.vmlinuz}", flush=True)
        print(f"libbpf: {toolchain.libbpf()}", flush=True)
        print(f"loader: {toolchain.loader(static=True)} and {toolchain.loader(static=False)}", flush=True)
        print(f"probes: {', '.join(toolchain.probes())}", flush=True)
        for meta in policies.library():
            if meta.kind == "sched_ext":
                print(f"policy {meta.name}: {toolchain.compile_policy(policies.source_of(meta), kernel)}", flush=True)
    except BuildError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    print(f"ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
