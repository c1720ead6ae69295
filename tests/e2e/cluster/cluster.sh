#!/usr/bin/env bash
# The local control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (simulated nodes), all on 127.0.0.1.
#
#   cluster.sh up          build if needed, generate PKI, start, wait until ready
#   cluster.sh down        stop everything (idempotent)
#   cluster.sh kubeconfig  print the kubeconfig path (contexts admin, alice, bob, mallory)
#   cluster.sh bin         print the directory of the built binaries (kubectl, helm, ...)
#   cluster.sh status      say what runs
#   cluster.sh import TAR  import an OCI image archive into the real node's runtime
#   cluster.sh testhost I PORTS   start test host I behind the real node, serving HTTP on
#                          PORTS (comma separated); prints its address
#
# With DRMESH_REAL_NODE=1, `up` also starts a real node beside the kwok nodes (node.sh):
# real pods, real packets, NetworkPolicies enforced. `down` always removes it.
#
# State lives in $DRMESH_CLUSTER_DIR (default: <repo>/.drmesh/cluster). The API server's
# audit log (logs/audit.log) rotates at 200 MB and keeps $DRMESH_AUDIT_LOG_BACKUPS old
# files (default 2); a 10,000-product `make bench` writes about 3 GB of it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
dir="${DRMESH_CLUSTER_DIR:-$repo/.drmesh/cluster}"
pki="$dir/pki"
logs="$dir/logs"
run="$dir/run"

etcd_port="${DRMESH_ETCD_PORT:-23790}"
etcd_peer_port="${DRMESH_ETCD_PEER_PORT:-23800}"
api_port="${DRMESH_API_PORT:-16443}"
kcm_port="${DRMESH_KCM_PORT:-10257}"
sched_port="${DRMESH_SCHED_PORT:-10259}"
kwok_port="${DRMESH_KWOK_PORT:-10247}"
nodes="${DRMESH_FAKE_NODES:-3}"
# 3 nodes × 5,000 pods: room for the 10,000-product benchmark (make bench).
node_pods="${DRMESH_FAKE_NODE_PODS:-5000}"
server="https://127.0.0.1:$api_port"
components=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)
real_node="${DRMESH_REAL_NODE:-0}"

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] error: $*" >&2; exit 1; }

# People the tests act as: name and groups (comma separated, may be empty).
people=("alice:cnc-officers" "bob:transport-analysts" "mallory:")

gen_cert() { # name subject [server-sans]
  local name="$1" subj="$2" sans="${3:-}"
  [[ -f "$pki/$name.crt" ]] && return 0
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  local ext="$pki/$name.ext"
  if [[ -n "$sans" ]]; then
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$sans" > "$ext"
  else
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$ext"
  fi
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

gen_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  if [[ ! -f "$pki/ca.crt" ]]; then
    openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=drmesh-local-ca" -days 365 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$pki/ca.crt" 2>/dev/null
  fi
  gen_cert apiserver "/CN=kube-apiserver" \
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
  [[ -f "$pki/sa.key" ]] || { openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null; openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null; }
  gen_cert admin "/O=system:masters/CN=drmesh-admin"
  gen_cert kube-controller-manager "/CN=system:kube-controller-manager"
  gen_cert kube-scheduler "/CN=system:kube-scheduler"
  gen_cert kwok "/O=system:masters/CN=kwok-controller"
  local p name groups subj g
  for p in "${people[@]}"; do
    name="${p%%:*}"; groups="${p#*:}"; subj=""
    IFS=',' read -ra gs <<< "$groups"
    for g in "${gs[@]}"; do subj="$subj/O=$g"; done
    gen_cert "$name" "$subj/CN=$name"
  done
}

write_kubeconfig() { # file user... (first user is the current context)
  local file="$1"; shift
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    echo "- name: drmesh-local"
    echo "  cluster: {server: \"$server\", certificate-authority: \"$pki/ca.crt\"}"
    echo "users:"
    for u in "$@"; do
      echo "- name: $u"
      echo "  user: {client-certificate: \"$pki/$u.crt\", client-key: \"$pki/$u.key\"}"
    done
    echo "contexts:"
    for u in "$@"; do
      echo "- name: $u"
      echo "  context: {cluster: drmesh-local, user: $u}"
    done
    echo "current-context: $1"
  } > "$file"
  chmod 600 "$file"
}

write_configs() {
  local people_names=() p
  for p in "${people[@]}"; do people_names+=("${p%%:*}"); done
  write_kubeconfig "$dir/kubeconfig" admin "${people_names[@]}"
  write_kubeconfig "$dir/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$dir/kube-scheduler.kubeconfig" kube-scheduler
  write_kubeconfig "$dir/kwok.kubeconfig" kwok
  cp "$here/audit-policy.yaml" "$dir/audit-policy.yaml"
}

pid_of() { [[ -f "$run/$1.pid" ]] && cat "$run/$1.pid"; }
# A killed component whose parent is gone may linger as a zombie: that is not running.
alive() {
  local pid
  pid="$(pid_of "$1")" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]
}

start() { # name binary args...
  local name="$1"; shift
  if alive "$name"; then log "$name already running"; return 0; fi
  # setsid: the component outlives the shell that started it and gets its own group.
  setsid "$@" >"$logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$run/$name.pid"
}

# Polls a probe until it succeeds or the deadline passes; shows the log tail on failure.
wait_until() { # what timeout-seconds component command...
  local what="$1" timeout="$2" comp="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$comp"; then tail -n 30 "$logs/$comp.log" >&2; die "$comp exited while waiting for $what"; fi
    if (( SECONDS > deadline )); then tail -n 30 "$logs/$comp.log" >&2; die "timed out waiting for $what"; fi
    sleep 0.2
  done
}

probe() { # url client-cert-name
  curl -fsS --max-time 2 --cacert "$pki/ca.crt" --cert "$pki/$2.crt" --key "$pki/$2.key" "$1"
}
probe_insecure() { curl -fsSk --max-time 2 "$1"; }

create_nodes() {
  local i
  for ((i = 0; i < nodes; i++)); do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
spec:
  taints: []
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "$node_pods"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "$node_pods"}
EOF
    echo "---"
  done
}

# openssl makes the PKI, curl probes readiness; install them on a bare machine.
ensure_tools() {
  local missing=() t
  for t in openssl curl setsid; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl curl util-linux >&2
}

up() {
  ensure_tools
  local bin
  bin="$("$here/build.sh")"
  mkdir -p "$dir" "$logs" "$run"
  echo "$bin" > "$dir/bin-path"
  gen_pki
  write_configs
  local t0=$SECONDS
  # The real node's pods reach the API server through the `kubernetes` Service, whose
  # endpoint is the advertised address (node.sh forwards it to 127.0.0.1); pods are
  # placed on the real node by their namespace's annotations (PodNodeSelector,
  # PodTolerationRestriction), so the kwok nodes keep everything else.
  local advertise=127.0.0.1 node_flags=()
  if [[ "$real_node" == 1 ]]; then
    advertise="$host_ip"
    node_flags=(--enable-admission-plugins PodNodeSelector,PodTolerationRestriction)
  fi
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"

  start etcd "$bin/etcd" --name drmesh --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "drmesh=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true --quota-backend-bytes=8589934592 --log-level=warn
  wait_until "etcd health" 60 etcd curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address "$advertise" --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode Node,RBAC \
    --service-cluster-ip-range 10.96.0.0/16 \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup "${DRMESH_AUDIT_LOG_BACKUPS:-2}" \
    --allow-privileged=false --profiling="${DRMESH_APISERVER_PROFILING:-false}" \
    --cert-dir "$dir/apiserver-certs" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-preferred-address-types InternalIP \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --max-requests-inflight 800 --max-mutating-requests-inflight 400 "${node_flags[@]}"
  wait_until "kube-apiserver /readyz" 120 kube-apiserver probe "$server/readyz" admin

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/kube-controller-manager.kubeconfig" \
    --leader-elect=false --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" \
    --concurrent-gc-syncs 10 --kube-api-qps 200 --kube-api-burst 400
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/kube-scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$sched_port" \
    --kube-api-qps 200 --kube-api-burst 400
  local stages="$bin/stages"
  start kwok "$bin/kwok" --kubeconfig "$dir/kwok.kubeconfig" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.1/16 --node-ip 10.0.0.1 --node-lease-duration-seconds 40 \
    --server-address "127.0.0.1:$kwok_port" \
    -c "$stages/node/fast/node-initialize.yaml" \
    -c "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    -c "$stages/pod/fast/pod-ready.yaml" -c "$stages/pod/fast/pod-complete.yaml" \
    -c "$stages/pod/fast/pod-delete.yaml"

  wait_until "kube-controller-manager /healthz" 60 kube-controller-manager probe_insecure "https://127.0.0.1:$kcm_port/healthz"
  wait_until "kube-scheduler /healthz" 60 kube-scheduler probe_insecure "https://127.0.0.1:$sched_port/healthz"
  wait_until "kwok /healthz" 60 kwok curl -fsS --max-time 2 "http://127.0.0.1:$kwok_port/healthz"

  local k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  create_nodes | "${k[@]}" apply -f - >/dev/null
  # apply leaves the status of nodes kept from an earlier run (etcd persists): set it.
  local i
  for ((i = 0; i < nodes; i++)); do
    "${k[@]}" patch node "kwok-node-$i" --subresource=status --type=merge >/dev/null \
      -p "{\"status\":{\"allocatable\":{\"pods\":\"$node_pods\"},\"capacity\":{\"pods\":\"$node_pods\"}}}"
  done
  # Ready nodes and a default ServiceAccount prove kwok and the controllers act on the cluster.
  "${k[@]}" wait --for=condition=Ready node -l type=kwok --timeout=60s >/dev/null
  wait_until "default ServiceAccount" 60 kube-controller-manager "${k[@]}" get serviceaccount default -n default
  log "control plane ready in $((SECONDS - t0)) s: $nodes kwok nodes"
  [[ "$real_node" == 1 ]] && node_up "$bin"
  log "ready in $((SECONDS - t0)) s; kubeconfig: $dir/kubeconfig"
  echo "$dir/kubeconfig"
}

# TERM to the component's process group, KILL after the grace period.
stop() { # name grace-seconds
  local name="$1" grace="$2" pid i
  pid="$(pid_of "$name" || true)"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    log "stopped $name"
  fi
  rm -f "$run/$name.pid"
}

down() {
  local name
  node_down
  for name in "${components[@]}"; do stop "$name" 10; done
  # The next up starts from an empty etcd; PKI and built binaries are kept.
  rm -rf "$dir/etcd"
}

status() {
  local name rc=0 all=("${components[@]}")
  [[ -d "$node_dir" ]] && all+=("${node_components[@]}")
  for name in "${all[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(pid_of "$name"))"; else echo "$name: stopped"; rc=1; fi
  done
  return $rc
}

# shellcheck source=node.sh
source "$here/node.sh"

case "${1:-}" in
  up) up ;;
  down) down ;;
  kubeconfig) echo "$dir/kubeconfig" ;;
  # The current build (cached: instant), which has every tool; a running cluster may
  # still run binaries of an older, identical-in-Kubernetes build (see build.sh).
  bin) "$here/build.sh" ;;
  status) status ;;
  import) node_import "${2:?usage: $0 import OCI-ARCHIVE}" ;;
  testhost) node_testhost "${2:?usage: $0 testhost INDEX PORTS}" "${3:?usage: $0 testhost INDEX PORTS}" ;;
  *) echo "usage: $0 up|down|kubeconfig|bin|status" >&2; exit 2 ;;
esac
