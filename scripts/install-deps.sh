#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks for corral: the real parts (etcd, containerd, runc,
# CNI plugins, nftables), what the tests use (a registry, busybox-static, skopeo, chromium for the
# dashboard's browser tests), and Python's venv.
# Idempotent: packages already present are left alone. Needs root.
set -euo pipefail

PACKAGES=(
  etcd-server etcd-client
  containerd runc
  containernetworking-plugins iproute2 nftables iptables
  docker-registry busybox-static skopeo openssl
  chromium fonts-dejavu-core
  python3-venv
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "corral: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "corral: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The packages' own services are not wanted: corral starts etcd, containerd and the test registry itself.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi
