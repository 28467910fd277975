#!/usr/bin/env bash
# Stop corral and remove everything it made on this host, as k3s' uninstall script does — and only
# what corral made: its service units, its `corral serve` processes (by data dir), the containers,
# tasks, snapshots and images in containerd namespace `corral`, its network namespaces (the agent's
# prefix: "corral-" + sha256(agent dir)[:8] + "-"), its bridge (and so the veths and routes on it),
# its nftables table, its iptables rules (the masquerade rule commented "corral <bridge>", CNI
# portmap rules and chains of CNI network "corral"), mounts under the data dir, the data dir itself,
# and /etc/corral.
#
#   corral-uninstall.sh [--root DIR] [--data-dir DIR] [--bridge NAME] [--nft-table NAME]
#                       [--containerd-socket PATH] [--keep-data] [--keep-host-routes]
#
# Routes to other nodes' container subnets are corral's by their protocol number (74, see
# network/overlay.py): those over its VXLAN device go with the device; host-gw routes over the
# uplink are flushed by protocol, unless --keep-host-routes (a test host with other agents on it).
#
# Settings come from <root>/etc/corral/install.env (written by install.sh); flags override them;
# otherwise serve's defaults (/var/lib/corral, corral0, corral, /run/containerd/containerd.sock).
# An embedded containerd (one under the data dir) is started for the cleanup and stopped after;
# a system containerd is only touched in namespace `corral`.
set -uo pipefail

root="" keep_data=0 keep_routes=0
declare -A flag=()
while (($#)); do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --data-dir|--bridge|--nft-table|--containerd-socket) flag["$1"]="$2"; shift 2 ;;
    --keep-data) keep_data=1; shift ;;
    --keep-host-routes) keep_routes=1; shift ;;
    *) echo "usage: $0 [--root DIR] [--data-dir DIR] [--bridge NAME] [--nft-table NAME] [--containerd-socket PATH] [--keep-data] [--keep-host-routes]" >&2
       exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "corral: uninstall needs root" >&2; exit 1; }

CORRAL_UNIT="" CORRAL_DATA_DIR=/var/lib/corral CORRAL_BRIDGE=corral0 CORRAL_NFT_TABLE=corral
CORRAL_CONTAINERD_SOCKET=/run/containerd/containerd.sock
# shellcheck disable=SC1091
[[ -f "$root/etc/corral/install.env" ]] && . "$root/etc/corral/install.env"
data_dir="${flag[--data-dir]:-$CORRAL_DATA_DIR}"
bridge="${flag[--bridge]:-$CORRAL_BRIDGE}"
nft_table="${flag[--nft-table]:-$CORRAL_NFT_TABLE}"
socket="${flag[--containerd-socket]:-$CORRAL_CONTAINERD_SOCKET}"
data_dir="$(realpath -m "$data_dir")"
ns=corral
say() { echo "corral-uninstall: $*"; }

# 1. the service, then any `corral serve` left on this data dir (SIGTERM; SIGKILL after 30 s)
if [[ -d /run/systemd/system && -z "$root" ]]; then
  for unit in $CORRAL_UNIT corral.service corral-worker.service; do
    systemctl disable --now "$unit" 2>/dev/null && say "stopped and disabled $unit"
  done
  systemctl daemon-reload 2>/dev/null || true
fi
serve_pids() {  # `serve` processes whose --data-dir is ours (either spelling), found through /proc
  local pid args
  for pid in /proc/[0-9]*; do
    pid="${pid#/proc/}"
    args="$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null)" || continue
    grep -qx serve <<<"$args" || continue
    grep -q 'corral' <<<"$args" || continue
    if grep -qx -- "--data-dir=$data_dir" <<<"$args" || grep -A1 -x -- "--data-dir" <<<"$args" | grep -qx -- "$data_dir"; then
      echo "$pid"
    fi
  done
}
pids="$(serve_pids)"
if [[ -n "$pids" ]]; then
  say "stopping corral serve ($(echo $pids))"
  kill -TERM $pids 2>/dev/null
  for _ in $(seq 300); do [[ -z "$(serve_pids)" ]] && break; sleep 0.1; done
  pids="$(serve_pids)"; [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
fi
for pidfile in "$data_dir/etcd.pid" "$data_dir/containerd/containerd.pid" \
               "$data_dir/agent/logpipes/.collector.pid"; do  # children of a killed serve; the log collector
  [[ -f "$pidfile" ]] || continue
  pid="$(cat "$pidfile")"
  if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$data_dir"; then
    kill -TERM "$pid" 2>/dev/null; sleep 1; kill -KILL "$pid" 2>/dev/null
  fi
done

# 2. containers, tasks, snapshots and images in namespace corral
embedded_pid="" ids=""
config="$data_dir/containerd/config.toml"
if [[ -f "$config" ]]; then  # the embedded containerd: start it on its own dirs for the cleanup
  socket="$(sed -n 's/^ *address = "\(.*\)"$/\1/p' "$config" | grep -v ttrpc | head -1)"
  if [[ -n "$socket" ]]; then
    mkdir -p "$(dirname "$socket")"
    containerd --config "$config" >>"$data_dir/containerd/uninstall.log" 2>&1 &
    embedded_pid=$!
    for _ in $(seq 100); do ctr -a "$socket" version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
fi
if [[ -S "$socket" ]] && ctr -a "$socket" version >/dev/null 2>&1; then
  c=(ctr -a "$socket" -n "$ns")
  for id in $("${c[@]}" tasks ls -q 2>/dev/null); do
    "${c[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1
  done
  for id in $("${c[@]}" tasks ls -q 2>/dev/null); do
    for _ in $(seq 50); do "${c[@]}" tasks rm -f "$id" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  ids="$("${c[@]}" containers ls -q 2>/dev/null)"
  for id in $ids; do "${c[@]}" containers rm "$id" >/dev/null 2>&1; done
  [[ -n "$ids" ]] && say "removed $(wc -w <<<"$ids") container(s) in containerd namespace $ns"
  for image in $("${c[@]}" images ls -q 2>/dev/null); do "${c[@]}" images rm --sync "$image" >/dev/null 2>&1; done
  for _ in 1 2 3 4 5; do  # snapshots: children before parents
    keys="$("${c[@]}" snapshots ls 2>/dev/null | awk 'NR>1 {print $1}')"
    [[ -z "$keys" ]] && break
    for key in $keys; do "${c[@]}" snapshots rm "$key" >/dev/null 2>&1; done
  done
  "${c[@]}" leases ls -q 2>/dev/null | while read -r lease; do "${c[@]}" leases rm "$lease" >/dev/null 2>&1; done
  ctr -a "$socket" namespaces rm "$ns" >/dev/null 2>&1 && say "removed containerd namespace $ns"
else
  say "no containerd answers at $socket: containers of namespace $ns (if any) are left to it"
fi
if [[ -n "$embedded_pid" ]]; then
  kill -TERM "$embedded_pid" 2>/dev/null; wait "$embedded_pid" 2>/dev/null
  short="$(dirname "$socket")"
  [[ "$short" == /tmp/corral-ctd-* ]] && rm -rf "$short"
fi

# 3. network: the agent's namespaces, its bridge, its nft table, its iptables rules
prefix="corral-$(printf '%s' "$data_dir/agent" | sha256sum | cut -c1-8)-"
uids=""  # the containers' uids: their netns names and network records; CNI knew them by these
for record in "$data_dir"/agent/network/*.json; do
  [[ -f "$record" ]] && uids+=" $(basename "$record" .json)"
done
for netns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$prefix"); do
  uids+=" ${netns#"$prefix"}"
  ip netns delete "$netns" && say "removed netns $netns"
done
if ip link show "$bridge" type bridge >/dev/null 2>&1; then
  ip link delete "$bridge" && say "removed bridge $bridge (and the routes on it)"
fi
if [[ "$bridge" == corral0 ]]; then vxlan=corral.vxlan; else vxlan="${bridge:0:12}.vx"; fi  # network/overlay.py
if ip link show "$vxlan" type vxlan >/dev/null 2>&1; then
  ip link delete "$vxlan" && say "removed VXLAN device $vxlan (and the routes over it)"
fi
if ((!keep_routes)) && [[ -n "$(ip route show proto 74 2>/dev/null)" ]]; then
  ip route flush proto 74 && say "removed corral's routes to other nodes (protocol 74)"
fi
nft delete table inet "$nft_table" 2>/dev/null && say "removed nftables table inet $nft_table"
iptables -w -t nat -S POSTROUTING 2>/dev/null | grep -F -- "--comment \"corral $bridge\"" | while read -r rule; do
  eval "iptables -w -t nat ${rule/-A /-D }" && say "removed the masquerade rule of $bridge"
done
# CNI portmap: the per-container rules carry a comment with the CNI network and the container's id
# (its uid); only those of this agent's containers (other agents on this host use network "corral" too)
for table in nat filter; do
  for id in $(tr ' ' '\n' <<<"$uids" | sort -u); do
    iptables -w -t "$table" -S 2>/dev/null | grep -F "name: \\\"corral\\\" id: \\\"$id\\\""
  done | while read -r rule; do
    eval "iptables -w -t $table ${rule/-A /-D }" 2>/dev/null
    chain="$(grep -o -- '-j CNI-[A-Z]*-[0-9a-f]*' <<<"$rule" | cut -d' ' -f2)"
    if [[ -n "$chain" ]]; then
      iptables -w -t "$table" -F "$chain" 2>/dev/null
      iptables -w -t "$table" -X "$chain" 2>/dev/null
    fi
  done
done

# 4. mounts under the data dir (deepest first), the data dir, corral's files in /etc and /usr/local/bin
awk '{print $2}' /proc/self/mounts | grep "^$data_dir/" | sort -r | while read -r mnt; do
  umount -l "$mnt" 2>/dev/null
done
if ((keep_data)); then
  say "kept $data_dir"
elif [[ -d "$data_dir" ]]; then
  rm -rf "$data_dir" && say "removed $data_dir"
fi
for unit in corral.service corral-worker.service; do rm -f "$root/etc/systemd/system/$unit"; done
rm -rf "$root/etc/corral"
rm -f "$root/usr/local/bin/corral-uninstall.sh"
say "done"
