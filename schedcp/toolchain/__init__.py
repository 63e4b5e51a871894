"""The sched_ext toolchain: the pinned kernel catalogue, the loader, libbpf, the probes and the
policy objects built into the cache, and the sandbox micro-VM that runs them (initramfs, runner).
Used by the verifier and the executor; `python -m schedcp.toolchain` builds everything once."""
