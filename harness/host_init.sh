#!/bin/sh
# /init of a fleet host VM (harness/hostimage.py): mount what schedcp needs, bring up the
# user-mode network (the host's loopback is 10.0.2.2), then run this VM's own start script
# from its configuration initramfs, and power off when it ends.
export PATH=/opt/schedcp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mkdir -p /proc /sys /dev /run /tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
modprobe virtio_net
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "@@host-up $(uname -r) $(cat /sys/kernel/sched_ext/state 2>/dev/null || echo no-sched_ext)"
if [ -f /etc/schedcp/host.env ]; then set -a; . /etc/schedcp/host.env; set +a; fi
[ -f /etc/schedcp/start.sh ] && sh /etc/schedcp/start.sh 2>&1
echo "@@host-done"
# No init system here: power off through sysrq, and stay alive until it happens (init must not exit).
echo o > /proc/sysrq-trigger
sleep 30
