"""The development harness of `make e2e` and the sched_ext executor tests: fleet host VMs (host
image, in-VM agents), the fleet on one machine and the end-to-end drills. Not shipped in the wheel."""
