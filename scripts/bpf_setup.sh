#!/usr/bin/env bash
# What the BPF parts and the tests need from Debian, made available to the virtualenv:
#  - BCC (python3-bpfcc; the PyPI package named `bcc` is unrelated), linked into the venv alone
#    rather than putting all of Debian's dist-packages on its path;
#  - kernel headers for BCC when the running kernel ships none: Debian's newest header packages
#    are downloaded and extracted (not installed) into $VENV/share/schedcp/kernel-headers. The
#    observer's probes read tracepoint fields only, so headers of another kernel version serve;
#  - rt-tests (cyclictest) and stress-ng, the workloads the tests and benchmarks run;
#  - the sched_ext toolchain (schedcp/toolchain/build.py): qemu, clang/llvm, bpftool, busybox-static,
#    zstd, and the static libraries the loader links (libelf, zlib, libzstd);
#  - prometheus, which a test runs to scrape every service's metrics;
#  - mmdebstrap, which builds the fleet host VMs' Debian root filesystem (harness/hostimage.py).
# Anything that cannot be had is a warning, not a failure: the observer then runs procfs-only
# and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
HEADERS="$VENV/share/schedcp/kernel-headers"
PACKAGES=(python3-bpfcc rt-tests stress-ng qemu-system-x86 clang llvm bpftool busybox-static zstd prometheus mmdebstrap
          libelf-dev zlib1g-dev libzstd-dev)

warn() { echo "bpf_setup: $*" >&2; }
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v apt-get >/dev/null; then
  warn "no apt-get here: install BCC, kernel headers, rt-tests and stress-ng yourself; the observer runs procfs-only without BCC"
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bpf_setup: installing ${missing[*]} (apt)" >&2
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || warn "could not install ${missing[*]}"
fi

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
fi

release=$(uname -r)
if [ -e "/lib/modules/$release/build/include/linux/kconfig.h" ]; then
  exit 0  # the kernel's own headers; BCC finds them
fi
if [ -e "$HEADERS/include/linux/kconfig.h" ]; then
  exit 0
fi
arch=$(dpkg --print-architecture)
common=$(apt-cache search --names-only '^linux-headers-[0-9.]+-[0-9]+-common$' | awk '{print $1}' | sort -V | tail -1)
if [ -z "$common" ]; then
  warn "no linux-headers-*-common package in the apt sources; BPF mode needs BCC_KERNEL_SOURCE"
  exit 0
fi
flavour=${common%-common}-$arch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "bpf_setup: kernel $release has no headers; extracting $flavour and $common for BCC into $HEADERS" >&2
if ! (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$flavour" "$common" >/dev/null); then
  warn "could not download $flavour $common; BPF mode needs BCC_KERNEL_SOURCE"
  exit 0
fi
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
# The flavour package holds the configured parts and symlinks into the common tree; BCC
# wants one tree, so lay the flavour's files over a copy of the common ones.
src="$work/root/usr/src"
mkdir -p "$HEADERS.tmp"
cp -a "$src/${common}/." "$HEADERS.tmp/"
for part in .config Module.symvers arch include; do
  cp -a "$src/$flavour/$part" "$HEADERS.tmp/"
done
rm -rf "$HEADERS" && mv "$HEADERS.tmp" "$HEADERS"
echo "bpf_setup: kernel headers for BCC in $HEADERS" >&2
