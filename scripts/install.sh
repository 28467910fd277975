#!/usr/bin/env bash
# Install corral as a systemd service, the way k3s' installer does.
#
#   scripts/install.sh --role control|worker|all [install options] [--] [flags passed to `corral serve`]
#
# Writes (under --root, "/" by default):
#   <unit-dir>/corral.service (control, all) or corral-worker.service (worker)
#       KillMode=process: a stop or restart of the service ends `corral serve` (which stops its own
#       etcd, containerd and leader children) but not the containers' shims, so containers keep
#       running across a service restart, as with k3s. Delegate=yes: corral manages cgroups below
#       its own. Restart=on-failure with a short back-off.
#   /etc/corral/corral.env (mode 0600): the tokens (CORRAL_JOIN_TOKEN, CORRAL_NODE_TOKEN) taken out of the
#       serve flags, so they never show on a command line or in the unit; `corral serve` reads them
#       from the environment.
#   /etc/corral/install.env: what scripts/uninstall.sh needs to remove exactly what corral made
#       (data dir, bridge, nft table, containerd socket, unit name).
#   /usr/local/bin/corral-uninstall.sh: a copy of scripts/uninstall.sh.
# Then, when systemd runs this machine (and not with --no-start): daemon-reload, enable --now.
#
# Install options (before the serve flags):
#   --role ROLE         control, worker or all (required)
#   --exec COMMAND      what runs corral (default: `command -v corral`); may be several words,
#                       e.g. "/opt/corral/venv/bin/python -m corral.cli.main"
#   --root DIR          write everything under DIR instead of / (staging, tests); implies --no-start
#   --no-start          write the files, do not touch systemd
set -euo pipefail

role="" exec_cmd="" root="" start=1
serve_flags=()
while (($#)); do
  case "$1" in
    --role) role="$2"; shift 2 ;;
    --role=*) role="${1#*=}"; shift ;;
    --exec) exec_cmd="$2"; shift 2 ;;
    --root) root="$2"; start=0; shift 2 ;;
    --no-start) start=0; shift ;;
    --) shift; serve_flags+=("$@"); break ;;
    *) serve_flags+=("$1"); shift ;;
  esac
done

case "$role" in
  control|worker|all) ;;
  *) echo "usage: $0 --role control|worker|all [--exec CMD] [--root DIR] [--no-start] [serve flags]" >&2; exit 2 ;;
esac
if [[ -z "$exec_cmd" ]]; then
  exec_cmd="$(command -v corral || true)"
  [[ -n "$exec_cmd" ]] || { echo "corral: no \`corral\` on PATH; say what runs it with --exec" >&2; exit 1; }
fi
[[ "$exec_cmd" == /* ]] || { echo "corral: --exec must start with an absolute path (systemd needs one)" >&2; exit 2; }
if [[ -z "$root" && $(id -u) -ne 0 ]]; then
  echo "corral: installing a system service needs root" >&2
  exit 1
fi

# Tokens go to the environment file; what uninstall needs is noted from the flags (serve's defaults otherwise).
join_token="" node_token="" data_dir="/var/lib/corral" bridge="corral0" nft_table="corral"
containerd_socket="/run/containerd/containerd.sock"
kept=()
i=0
while ((i < ${#serve_flags[@]})); do
  flag="${serve_flags[i]}" value=""
  name="${flag%%=*}"
  if [[ "$flag" == *=* ]]; then value="${flag#*=}"; step=1; else value="${serve_flags[i+1]:-}"; step=2; fi
  case "$name" in
    --join-token) join_token="$value"; i=$((i + step)); continue ;;
    --token) node_token="$value"; i=$((i + step)); continue ;;
    --data-dir) data_dir="$value" ;;
    --bridge) bridge="$value" ;;
    --nft-table) nft_table="$value" ;;
    --containerd-socket) containerd_socket="$value" ;;
    *) step=1 ;;
  esac
  kept+=("${serve_flags[@]:i:step}")
  i=$((i + step))
done

case "$role" in
  all) unit="corral.service"; role_flag="--all"; description="corral: the whole cluster on this host" ;;
  control) unit="corral.service"; role_flag="--role=control"; description="corral: control plane" ;;
  worker) unit="corral-worker.service"; role_flag="--role=worker"; description="corral: worker (agent)" ;;
esac
if [[ "$role" == worker && -z "$join_token$node_token" ]]; then
  echo "corral: a worker needs --join-token K10… (from join.token on a control host) to join; --server https://… too" >&2
  exit 2
fi

quote() {  # one argument as systemd's ExecStart reads it: double-quoted, with \ " and % escaped
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  s="${s//%/%%}"
  s="${s//\$/\$\$}"
  printf '"%s"' "$s"
}
env_quote() {  # a value as systemd's EnvironmentFile reads it: double-quoted, \ and " escaped
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}
exec_start="$exec_cmd serve $role_flag"
for arg in "${kept[@]}"; do exec_start+=" $(quote "$arg")"; done

etc="$root/etc/corral"
unit_dir="$root/etc/systemd/system"
bin_dir="$root/usr/local/bin"
mkdir -p "$etc" "$unit_dir" "$bin_dir"
env_file="$etc/corral.env"
umask 077
{
  echo "# corral's secrets, read by $unit (EnvironmentFile=); mode 0600"
  [[ -n "$join_token" ]] && echo "CORRAL_JOIN_TOKEN=$(env_quote "$join_token")"
  [[ -n "$node_token" ]] && echo "CORRAL_NODE_TOKEN=$(env_quote "$node_token")"
  true
} > "$env_file"
chmod 0600 "$env_file"
umask 022

cat > "$etc/install.env" <<EOF
# written by corral's install.sh; read by corral-uninstall.sh
CORRAL_UNIT=$unit
CORRAL_ROLE=$role
CORRAL_DATA_DIR=$(printf %q "$data_dir")
CORRAL_BRIDGE=$(printf %q "$bridge")
CORRAL_NFT_TABLE=$(printf %q "$nft_table")
CORRAL_CONTAINERD_SOCKET=$(printf %q "$containerd_socket")
EOF

cat > "$unit_dir/$unit" <<EOF
[Unit]
Description=$description
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
EnvironmentFile=-/etc/corral/corral.env
ExecStart=$exec_start
# Only corral itself is stopped: it stops its etcd, containerd and leader children; the containers'
# shims stay, so containers keep running across a service restart.
KillMode=process
Delegate=yes
Restart=on-failure
RestartSec=2s
TimeoutStartSec=0
TimeoutStopSec=60s
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity

[Install]
WantedBy=multi-user.target
EOF

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
install -m 0755 "$here/uninstall.sh" "$bin_dir/corral-uninstall.sh"

echo "corral: wrote $unit_dir/$unit, $env_file, $etc/install.env, $bin_dir/corral-uninstall.sh"
if ((start)); then
  if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable --now "$unit"
    echo "corral: $unit enabled and started (journalctl -u $unit to follow it)"
  else
    echo "corral: systemd does not run this machine; the unit is written but not started" >&2
  fi
fi
