#!/usr/bin/env bash
# The real programs of the scenario suite (bench/scenarios), from Debian: nginx-light and wrk,
# redis-server and redis-tools (redis-benchmark), postgresql (the server and pgbench), rt-app,
# xz-utils, pigz; rt-tests (hackbench) and stress-ng come with scripts/bpf_setup.sh. The packaged
# services must not start: the suite runs its own nginx, redis and PostgreSQL cluster on free
# ports with private configurations, so the install runs with a policy-rc.d that refuses every
# service start, removed afterwards. (postgresql's install still creates its system cluster,
# stopped, under /var/lib/postgresql; the suite never uses it.)
set -euo pipefail
PACKAGES=(nginx-light wrk redis-server redis-tools postgresql rt-app xz-utils pigz)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "bench_setup: need ${missing[*]} and this machine has no apt-get; install them and retry" >&2
  exit 1
fi
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "bench_setup: installing ${missing[*]} (apt; their services are not started)" >&2
policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
  echo "bench_setup: $policy exists already; installing with it as it is" >&2
  owned=0
else
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && owned=1
fi
# (an `if`: a false `[ ]` as the trap's last command would make the script exit 1 after a good install)
cleanup() { if [ "$owned" = 1 ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
