#!/bin/busybox sh
# /init of the sandbox micro-VM: mount what sched_ext and BPF need, run the test plan that the
# runner packed into /plan.sh, mark the end on the serial console, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
echo "@@booted $(uname -r) $(cat /sys/kernel/sched_ext/state 2>/dev/null || echo no-sched_ext)"
sh /plan.sh 2>&1
echo "@@done"
poweroff -f
