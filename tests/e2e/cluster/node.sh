# The real node (DRMESH_REAL_NODE=1), sourced by cluster.sh: containerd + runc + the CNI
# reference plugins, kubelet, kube-proxy, kube-router's NetworkPolicy firewall and
# CoreDNS, beside the kwok nodes. Everything of the node lives in a network namespace of
# its own (its iptables, ipsets, bridge, pods' links and ports never touch the host's),
# its processes and pods in one cgroup parent of its own, its files in $dir/node.
#
# Host state it creates, and removes again on `down`:
#   netns drmesh-node-$idx, linked to the host by one veth ($host_if, 10.246.$idx.1/24
#   on the host side); a host route to the node's pod CIDR through it (the API server
#   reaches pods and kubelet that way); a socat forwarder from 10.246.$idx.1:$api_port
#   to the API server on 127.0.0.1 (the address pods reach through the `kubernetes`
#   Service); cgroups <parent>/drmesh-node-$idx in each v1 hierarchy; test hosts'
#   namespaces drmesh-th$idx-*; kubelet's symlinks in /var/log/containers; containerd's
#   shim sockets in /run/containerd/s (the directory too, when the node created it).
# The host's ip_forward is left alone and nothing is masqueraded: the node's namespace
# has no default route, so no packet of a pod can leave the machine.

# 1..250, one per cluster on the machine: by default derived from the cluster's directory.
node_idx="${DRMESH_NODE_INDEX:-$(($(printf '%s' "$dir" | cksum | cut -d' ' -f1) % 250 + 1))}"
[[ "$node_idx" =~ ^[0-9]+$ ]] && ((node_idx >= 1 && node_idx <= 250)) || die "DRMESH_NODE_INDEX must be 1..250"
node_name="${DRMESH_NODE_NAME:-drmesh-node-$node_idx}"
node_dir="$dir/node"
node_netns="drmesh-node-$node_idx"
host_if="drmesh${node_idx}h"
link_net="10.246.$node_idx"
host_ip="$link_net.1"
node_ip="$link_net.2"
pod_cidr="${DRMESH_NODE_POD_CIDR:-10.245.$node_idx.0/24}"
dns_ip=10.96.0.10
# The node's components, stopped in this order.
node_components=(kube-router kube-proxy kubelet containerd api-forwarder)

nlog() { echo "[node] $*" >&2; }
in_node() { nsenter --net="/run/netns/$node_netns" "$@"; }

# cgroup v1 hierarchies (one directory each under /sys/fs/cgroup; cgroup2's "unified" is
# joined by runc itself in hybrid mode).
cg_hierarchies() {
  local h
  for h in /sys/fs/cgroup/*/; do
    h="$(basename "$h")"
    [[ "$h" == unified ]] || echo "$h"
  done
}

# The node's cgroup parent: under the memory cgroup of whoever starts it (never above it).
node_cgroup() {
  if [[ -f "$node_dir/cgroup" ]]; then cat "$node_dir/cgroup"; return; fi
  local base
  base="$(sed -nE 's/^[0-9]+:memory:(.*)$/\1/p' /proc/self/cgroup)"
  base="${base%/}"
  echo "$base/drmesh-node-$node_idx" | tee "$node_dir/cgroup"
}

# mkdir each level that does not exist yet, remembering it for `down`; cpuset levels get
# their parent's cpus and mems (v1 refuses tasks otherwise). In cgroup2's "unified"
# hierarchy runc creates the pods' levels itself: those that do not exist yet are
# remembered too.
make_cgroups() {
  local parent h path rel level
  parent="$(node_cgroup)"
  if [[ -d /sys/fs/cgroup/unified ]]; then
    rel=""
    IFS='/' read -ra levels <<< "${parent#/}"
    for level in "${levels[@]}"; do
      rel="$rel/$level"
      [[ -d "/sys/fs/cgroup/unified$rel" ]] || echo "/sys/fs/cgroup/unified$rel" >> "$node_dir/cgroups-created"
    done
  fi
  for h in $(cg_hierarchies); do
    path="/sys/fs/cgroup/$h"
    rel=""
    IFS='/' read -ra levels <<< "${parent#/}/system"
    for level in "${levels[@]}"; do
      rel="$rel/$level"
      if [[ ! -d "$path$rel" ]]; then
        mkdir "$path$rel"
        echo "$path$rel" >> "$node_dir/cgroups-created"
        if [[ "$h" == cpuset ]]; then
          cat "$(dirname "$path$rel")/cpuset.cpus" > "$path$rel/cpuset.cpus"
          cat "$(dirname "$path$rel")/cpuset.mems" > "$path$rel/cpuset.mems"
        fi
      fi
    done
  done
}

# Starts a node component in the node's network namespace and its cgroup ("system").
node_start() { # name binary args...
  local name="$1"; shift
  node_start_in "$node_netns" "$name" "$@"
}

node_start_in() { # netns name binary args...
  local netns="$1" name="$2"; shift 2
  local parent h procs=""
  parent="$(node_cgroup)"
  for h in $(cg_hierarchies); do procs="$procs /sys/fs/cgroup/$h$parent/system/cgroup.procs"; done
  start "$name" bash -c 'for f in '"$procs"'; do echo $$ > "$f"; done; exec "$@"' _ \
    nsenter --net="/run/netns/$netns" "$@"
}

# A test host: a namespace of its own behind the node, at 10.247.N.(4i+2), serving HTTP
# (the reference product's server) on PORTS. It stands for a DataSource's endpoint; its
# only way out is the node. Prints its address.
node_testhost() { # index ports
  local i="$1" ports="$2" b
  [[ -e "/run/netns/$node_netns" ]] || die "no real node runs (DRMESH_REAL_NODE=1 make cluster-up)"
  b="$(cat "$dir/bin-path")"
  local ns="drmesh-th$node_idx-$i" node_end="drmesh${node_idx}t$i" gw="10.247.$node_idx.$((4 * i + 1))"
  local addr="10.247.$node_idx.$((4 * i + 2))"
  if [[ ! -e "/run/netns/$ns" ]]; then
    ip netns add "$ns"
    ip -n "$node_netns" link add "$node_end" type veth peer name eth0 netns "$ns"
    ip -n "$node_netns" addr add "$gw/30" dev "$node_end"
    ip -n "$node_netns" link set "$node_end" up
    ip -n "$ns" addr add "$addr/30" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" route add default via "$gw"
  fi
  PRODUCT_NAME="testhost-$i" PRODUCT_PORTS="$ports" node_start_in "$ns" "testhost-$i" "$b/product" serve
  wait_until "test host $addr" 10 "testhost-$i" in_node "$b/product" probe "http://$addr:${ports%%,*}/"
  echo "$addr"
}

node_network() {
  if [[ ! -e "/run/netns/$node_netns" ]]; then
    ip netns add "$node_netns"
  fi
  if ! ip link show "$host_if" >/dev/null 2>&1; then
    ip link add "$host_if" type veth peer name "drmesh${node_idx}n"
    ip link set "drmesh${node_idx}n" netns "$node_netns"
    in_node ip link set "drmesh${node_idx}n" name eth0
    ip addr add "$host_ip/24" dev "$host_if"
    ip link set "$host_if" up
    in_node ip addr add "$node_ip/24" dev eth0
    in_node ip link set eth0 up
    in_node ip link set lo up
  fi
  # Pods are routed by the node; the API server reaches them through it.
  in_node sysctl -qw net.ipv4.ip_forward=1
  ip route replace "$pod_cidr" via "$node_ip" dev "$host_if"
}

# Replaces a file only when its content changes: kube-proxy exits when its config file
# is touched, and `up` runs again on a running node.
write_if_changed() { # file < content
  local tmp="$1.new"
  cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_node_configs() {
  mkdir -p "$node_dir"/{cni/net.d,containerd,kubelet,pod-logs}
  gen_cert "kubelet-$node_name" "/O=system:nodes/CN=system:node:$node_name"
  gen_cert kube-proxy "/CN=system:kube-proxy"
  gen_cert kube-router "/CN=drmesh:kube-router"
  gen_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  # Node components reach the API server through the forwarder; its certificate names
  # "kubernetes", not the forwarder's address.
  local u
  for u in "kubelet-$node_name" kube-proxy kube-router; do
    [[ -f "$node_dir/$u.kubeconfig" ]] && continue
    server="https://$host_ip:$api_port" write_kubeconfig "$node_dir/$u.kubeconfig" "$u"
    sed -i 's#certificate-authority: #tls-server-name: kubernetes, certificate-authority: #' "$node_dir/$u.kubeconfig"
  done
  : > "$node_dir/resolv.conf"
  write_if_changed "$node_dir/cni/net.d/10-drmesh.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "drmesh",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$pod_cidr"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "$node_dir/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  write_if_changed "$node_dir/containerd.toml" <<EOF
version = 2
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"
[grpc]
  address = "$node_dir/containerd.sock"
[ttrpc]
  address = "$node_dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node_dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "drmesh.local/pause:1"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # The machine refuses an oom_score_adj below its own (-998 for sandboxes): use its own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$cni_bin"
    conf_dir = "$node_dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$node_dir/containerd/runc"
        SystemdCgroup = false
EOF
  write_if_changed "$node_dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $(node_cgroup)
containerRuntimeEndpoint: unix://$node_dir/containerd.sock
address: $node_ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
clusterDNS: [$dns_ip]
clusterDomain: cluster.local
resolvConf: $node_dir/resolv.conf
failSwapOn: false
# The node shares a machine: it never evicts because of the host's memory or disk, and
# never removes images (nothing can pull them again).
evictionHard: {memory.available: "0%", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: $node_dir/pod-logs
registerWithTaints: [{key: drmesh.io/real-node, value: "true", effect: NoSchedule}]
serializeImagePulls: false
EOF
  write_if_changed "$node_dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $node_dir/kube-proxy.kubeconfig}
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
mode: iptables
# conntrack is the host's: kube-proxy leaves its limits and timeouts alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
nodePortAddresses: [$node_ip/32]
EOF
}

# The images the node runs, imported into containerd's k8s.io namespace.
import_images() { # bin-dir
  local b="$1" kind tar
  for kind in pause product coredns; do
    tar="$("$repo/images/build.sh" "$kind" "$b/$kind")"
    node_import "$tar" 2>/dev/null
  done
}

# cluster.sh import: an image built after the node started (make image).
node_import() { # oci-archive
  [[ -S "$node_dir/containerd.sock" ]] || die "no real node runs (DRMESH_REAL_NODE=1 make cluster-up)"
  ctr --address "$node_dir/containerd.sock" -n k8s.io images import --no-unpack "$1" >&2
}

node_up() { # bin-dir
  local b="$1" t0=$SECONDS
  cni_bin="${DRMESH_CNI_BIN:-/usr/lib/cni}"
  ensure_node_tools
  mkdir -p "$node_dir"
  node_network
  make_cgroups
  write_node_configs

  # containerd's shims keep their sockets in /run/containerd/s whatever the config says.
  [[ -e /run/containerd ]] || echo /run/containerd > "$node_dir/run-containerd-created"
  start api-forwarder socat "TCP-LISTEN:$api_port,bind=$host_ip,reuseaddr,fork" "TCP:127.0.0.1:$api_port"
  node_start containerd containerd --config "$node_dir/containerd.toml"
  wait_until "containerd" 60 containerd ctr --address "$node_dir/containerd.sock" version
  import_images "$b"

  node_start kubelet "$b/kubelet" --config "$node_dir/kubelet.yaml" \
    --kubeconfig "$node_dir/kubelet-$node_name.kubeconfig" --root-dir "$node_dir/kubelet" \
    --cert-dir "$node_dir/kubelet/pki" --hostname-override "$node_name" --node-ip "$node_ip" \
    --node-labels "drmesh.io/node=real"
  node_start kube-proxy "$b/kube-proxy" --config "$node_dir/kube-proxy.yaml"
  node_start kube-router "$b/kube-router" --run-firewall=true --run-router=false --run-service-proxy=false \
    --kubeconfig "$node_dir/kube-router.kubeconfig" --hostname-override "$node_name" \
    --service-cluster-ip-range 10.96.0.0/16 --metrics-port 0 --health-port 20244

  local k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  wait_until "node $node_name registered" 60 kubelet "${k[@]}" get node "$node_name"
  "${k[@]}" wait --for=condition=Ready "node/$node_name" --timeout=120s >/dev/null
  sed -e "s#@NODE_NAME@#$node_name#g" -e "s#@DNS_IP@#$dns_ip#g" "$here/node/addons.yaml" |
    "${k[@]}" apply --server-side --force-conflicts -f - >/dev/null
  "${k[@]}" -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
  wait_until "kube-router /healthz" 60 kube-router in_node curl -fsS --max-time 2 "http://127.0.0.1:20244/healthz"
  nlog "ready in $((SECONDS - t0)) s: node $node_name ($node_ip), pods in $pod_cidr"
}

# The node's processes, wherever they are in its cgroup tree (shims and containers too).
node_pids() {
  local parent
  parent="$(cat "$node_dir/cgroup" 2>/dev/null)" || return 0
  [[ -d "/sys/fs/cgroup/pids$parent" ]] || return 0
  find "/sys/fs/cgroup/pids$parent" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u
}

node_down() {
  [[ -d "$node_dir" ]] || return 0
  local name i pids
  for name in "${node_components[@]}"; do stop "$name" 5; done
  rm -f "$run"/testhost-*.pid
  # Containers, shims and test hosts left behind: everything in the node's cgroups.
  for ((i = 0; i < 50; i++)); do
    pids="$(node_pids)"
    [[ -n "$pids" ]] || break
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  # Mounts under the node's directory (overlay roots, pods' volumes, pods' netns), deepest first.
  findmnt -rn -o TARGET | grep -F "$node_dir/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  # Test hosts, the node's namespace (its veth goes with it), the host route.
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^drmesh-th$node_idx-" || true); do ip netns del "$ns"; done
  ip route del "$pod_cidr" via "$node_ip" 2>/dev/null || true
  [[ -e "/run/netns/$node_netns" ]] && ip netns del "$node_netns"
  ip link del "$host_if" 2>/dev/null || true
  # cgroups: the node's tree, deepest first, then the levels it created.
  local parent h
  if parent="$(cat "$node_dir/cgroup" 2>/dev/null)"; then
    for h in $(cg_hierarchies) unified; do
      [[ -d "/sys/fs/cgroup/$h$parent" ]] && find "/sys/fs/cgroup/$h$parent" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
  fi
  if [[ -f "$node_dir/cgroups-created" ]]; then
    tac "$node_dir/cgroups-created" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
  fi
  # The shims' socket directory, when this node created it and no other containerd uses it.
  if [[ -f "$node_dir/run-containerd-created" ]] && ! pgrep -x containerd >/dev/null; then rm -rf /run/containerd; fi
  # kubelet's links to the node's container logs.
  find /var/log/containers -maxdepth 1 -type l -lname "$node_dir/*" -delete 2>/dev/null || true
  rm -rf "$node_dir"
  nlog "removed node $node_name"
}

ensure_node_tools() {
  local missing=() t
  for t in containerd runc ctr socat iptables ipset conntrack nsenter findmnt; do command -v "$t" >/dev/null || missing+=("$t"); done
  [[ -x "${cni_bin:-/usr/lib/cni}/bridge" ]] || missing+=(containernetworking-plugins)
  ((${#missing[@]} == 0)) && return 0
  nlog "installing the node's runtime from Debian: containerd runc containernetworking-plugins iptables ipset conntrack socat"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    containerd runc containernetworking-plugins iptables ipset conntrack socat util-linux >&2
}
