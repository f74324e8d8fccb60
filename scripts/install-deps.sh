#!/usr/bin/env bash
# Install everything iser-csi needs to build, test, demo and benchmark on Debian 12
# (bookworm). Idempotent: when every package is already installed it does nothing
# (no apt-get update), so re-runs take well under a second.
#   bash scripts/install-deps.sh          # as root
#   ISER_SKIP_DEPS=1 bash scripts/...     # callers (test.sh, demo.sh) skip this step
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build clang libclang-rt-14-dev g++ pkg-config
  # libraries
  libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev libisal-dev
  liburing-dev libfuse3-dev fuse3 libibverbs-dev librdmacm-dev
  # peers and tools used by tests, demo and benchmarks
  libiscsi-bin tgt fio iperf3 e2fsprogs util-linux procps iproute2 git ca-certificates python3
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed, skipping apt"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: need root to install packages (run: sudo bash scripts/install-deps.sh)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get -q update
# Fail early with a clear message if a name has no install candidate.
for p in "${missing[@]}"; do
  cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [[ -z "$cand" || "$cand" == "(none)" ]]; then
    echo "install-deps: package '$p' has no install candidate in the configured apt sources" >&2
    exit 1
  fi
done
apt-get -q install -y --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${#missing[@]} packages"
