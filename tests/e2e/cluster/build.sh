#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), kwok, and the independent judges (np-guard's netpolicy, helm,
# and our kstatus wrapper of sigs.k8s.io/cli-utils) from the Go modules pinned next to
# this script. Prints the bin directory on stdout.
#
# With DRMESH_REAL_NODE=1 it also builds the real node's programs (node.sh): kubelet and
# kube-proxy (module node/, the same k8s.io/kubernetes as k8s/), kube-router's firewall
# (netpol/), CoreDNS (dns/), and the reference product and pause programs (images/).
#
# Cache: $DRMESH_CACHE/bin/<key>, where <key> hashes go.mod/go.sum of the three modules,
# the judges' own Go sources, this script and the Go version, so a second build costs nothing and a
# changed version rebuilds. Each module's binaries are also kept as a "part" under
# $DRMESH_CACHE/parts/<module>-<module key>, and a bin dir is assembled from hard links
# to the parts: changing the judges (helm, kstatus) does not rebuild Kubernetes.
#
# `build.sh flux` builds (or reuses) only the "flux" part and prints its directory: Flux's
# source-controller and kustomize-controller, Flux's git test server (gitserver), and
# Flux's CRDs (crds/), from the module flux/ next to this script, for the GitOps e2e test.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${DRMESH_CACHE:-$HOME/.cache/drmesh}"
k8s_version="$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9.]+).*/\2/p' "$here/k8s/go.mod")"
[[ -n "$k8s_version" ]] || { echo "[build] cannot read the k8s.io/kubernetes version from k8s/go.mod" >&2; exit 1; }
helm_version="$(sed -nE 's/^[[:space:]]*helm\.sh\/helm\/v3 (v[0-9.]+).*/\1/p' "$here/judges/go.mod")"
[[ -n "$helm_version" ]] || { echo "[build] cannot read the helm.sh/helm/v3 version from judges/go.mod" >&2; exit 1; }
go_version="$(go env GOVERSION)"
judges_sources() { (cd "$here/judges" && find . -name '*.go' -print0 | sort -z | xargs -0 -r cat); }
hash16() { sha256sum | cut -c1-16; }

# The judges are cheap to rebuild: their key also covers this script (their ldflags).
key="$( (cat "$here"/{k8s,kwok,judges}/go.{mod,sum}; judges_sources; cat "$here/build.sh"; echo "$go_version"; echo "$k8s_version") | hash16)"
real_node="${DRMESH_REAL_NODE:-0}"
node_version="$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9.]+).*/\2/p' "$here/node/go.mod")"
[[ "$node_version" == "$k8s_version" ]] ||
  { echo "[build] node/go.mod pins k8s.io/kubernetes $node_version, k8s/go.mod $k8s_version: keep them equal" >&2; exit 1; }
images_dir="$repo/images"
images_sources() { (cd "$images_dir" && find . -name '*.go' -print0 | sort -z | xargs -0 -r cat); }
declare -A part_key=(
  [k8s]="$( (cat "$here"/k8s/go.{mod,sum}; echo "$go_version"; echo "$k8s_version") | hash16)"
  [kwok]="$( (cat "$here"/kwok/go.{mod,sum}; echo "$go_version") | hash16)"
  [judges]="$( (cat "$here"/judges/go.{mod,sum}; judges_sources; cat "$here/build.sh"; echo "$go_version") | hash16)"
  [node]="$( (cat "$here"/node/go.{mod,sum}; echo "$go_version"; echo "$k8s_version") | hash16)"
  [netpol]="$( (cat "$here"/netpol/go.{mod,sum}; echo "$go_version") | hash16)"
  [dns]="$( (cat "$here"/dns/go.{mod,sum} "$here"/dns/*.go; echo "$go_version") | hash16)"
  [images]="$( (cat "$images_dir"/go.mod; images_sources; echo "$go_version") | hash16)"
  [flux]="$( (cat "$here"/flux/go.{mod,sum} "$here"/flux/gitserver/*.go; echo "$go_version") | hash16)"
)
declare -A part_tools=(
  [k8s]="etcd kube-apiserver kube-controller-manager kube-scheduler kubectl"
  [kwok]="kwok"
  [judges]="netpolicy helm kstatus yaml2json"
  [node]="kubelet kube-proxy"
  [netpol]="kube-router"
  [dns]="coredns"
  [images]="product pause"
  [flux]="source-controller kustomize-controller gitserver"
)
parts=(k8s kwok judges)
if [[ "$real_node" == 1 ]]; then
  parts+=(node netpol dns images)
  key="$( (echo "$key"; for p in node netpol dns images; do echo "${part_key[$p]}"; done) | hash16)"
fi
bin="$cache/bin/$key"
tools=()
for part in "${parts[@]}"; do tools+=(${part_tools[$part]}); done

have_all() { for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || return 1; done; }
only_flux=0
if [[ "${1:-}" == flux ]]; then
  only_flux=1
  flux_dir="$cache/parts/flux-${part_key[flux]}"
  if [[ -f "$flux_dir/.complete" ]]; then echo "$flux_dir"; exit 0; fi
elif have_all; then echo "$bin"; exit 0; fi

log() { echo "[build] $*" >&2; }
mkdir -p "$cache/bin" "$cache/parts"
# One build at a time: tests and people share the cache.
exec 8>"$cache/build.lock"
flock 8
if [[ "$only_flux" == 1 ]]; then
  if [[ -f "$flux_dir/.complete" ]]; then echo "$flux_dir"; exit 0; fi
elif have_all; then echo "$bin"; exit 0; fi

export CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath"
# Two packages at a time keeps peak memory of the linker bounded on small machines.
export GOMAXPROCS="${GOMAXPROCS:-2}"

major="${k8s_version#v}"; major="${major%%.*}"
minor="${k8s_version#v*.}"; minor="${minor%%.*}"
date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
ld="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ld="$ld -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
done

build_k8s() { # out-dir
  local out="$1" t
  cd "$here/k8s"
  for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$out/$t" ]] && continue
    log "building $t $k8s_version"
    go build -tags selinux,notest -ldflags "$ld" -o "$out/$t" "k8s.io/kubernetes/cmd/$t"
  done
  if [[ ! -x "$out/etcd" ]]; then
    log "building etcd"
    go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  fi
}

build_kwok() { # out-dir
  local out="$1"
  cd "$here/kwok"
  if [[ ! -x "$out/kwok" ]]; then
    log "building kwok"
    go build -ldflags "-s -w" -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok
  fi
  # Stage definitions ship inside the kwok module; keep a copy next to the binary.
  local stages
  stages="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  rm -rf "$out/stages" && cp -r "$stages" "$out/stages" && chmod -R u+w "$out/stages"
}

build_judges() { # out-dir
  # Independent judges of what drmesh produces (their own module: their k8s.io deps differ).
  local out="$1"
  cd "$here/judges"
  if [[ ! -x "$out/netpolicy" ]]; then
    log "building netpolicy (np-guard netpol-analyzer)"
    # The checksum database has no entry for this module; go.sum (committed) pins it.
    GONOSUMDB=github.com/np-guard go build -ldflags "-s -w" -o "$out/netpolicy" github.com/np-guard/netpol-analyzer/cmd/netpolicy
  fi
  if [[ ! -x "$out/helm" ]]; then
    log "building helm $helm_version"
    # As helm's Makefile does: its version, and the Kubernetes version that `helm
    # template`/`helm lint` assume (from the client-go it is built with), else v1.20.
    local client_go hv="helm.sh/helm/v3" kmajor kminor
    client_go="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
    kmajor=1; kminor="${client_go#v0.}"; kminor="${kminor%%.*}" # client-go v0.N is Kubernetes 1.N
    local hld="-s -w -X $hv/internal/version.version=$helm_version -X $hv/internal/version.metadata="
    hld="$hld -X $hv/internal/version.gitTreeState=clean"
    hld="$hld -X $hv/pkg/lint/rules.k8sVersionMajor=$kmajor -X $hv/pkg/lint/rules.k8sVersionMinor=$kminor"
    hld="$hld -X $hv/pkg/chartutil.k8sVersionMajor=$kmajor -X $hv/pkg/chartutil.k8sVersionMinor=$kminor"
    go build -ldflags "$hld" -o "$out/helm" helm.sh/helm/v3/cmd/helm
  fi
  if [[ ! -x "$out/kstatus" ]]; then
    log "building kstatus (sigs.k8s.io/cli-utils status.Compute)"
    go build -ldflags "-s -w" -o "$out/kstatus" ./kstatus
  fi
  if [[ ! -x "$out/yaml2json" ]]; then
    log "building yaml2json (sigs.k8s.io/yaml, as kubectl reads manifests)"
    go build -ldflags "-s -w" -o "$out/yaml2json" ./yaml2json
  fi
}

build_node() { # out-dir: kubelet and kube-proxy, from the same Kubernetes release as k8s/
  local out="$1" t
  cd "$here/node"
  for t in kubelet kube-proxy; do
    [[ -x "$out/$t" ]] && continue
    log "building $t $k8s_version"
    go build -tags selinux,notest -ldflags "$ld" -o "$out/$t" "k8s.io/kubernetes/cmd/$t"
  done
}

build_netpol() { # out-dir: kube-router, run as the NetworkPolicy firewall only (node.sh)
  local out="$1"
  cd "$here/netpol"
  [[ -x "$out/kube-router" ]] && return 0
  log "building kube-router"
  go build -ldflags "-s -w" -o "$out/kube-router" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router
}

build_dns() { # out-dir: CoreDNS with the cluster-only plugins of dns/main.go
  local out="$1"
  cd "$here/dns"
  [[ -x "$out/coredns" ]] && return 0
  log "building coredns"
  go build -ldflags "-s -w" -o "$out/coredns" .
}

build_images() { # out-dir: the programs of the reference product and pause images
  local out="$1" t
  cd "$images_dir"
  for t in product pause; do
    [[ -x "$out/$t" ]] && continue
    log "building $t"
    go build -ldflags "-s -w" -o "$out/$t" "./$t"
  done
}

build_flux() { # out-dir: Flux's controllers, its git test server and its CRDs
  local out="$1" t v
  cd "$here/flux"
  for t in source-controller kustomize-controller; do
    [[ -x "$out/$t" ]] && continue
    v="$(go list -m -f '{{.Version}}' "github.com/fluxcd/$t")"
    log "building $t $v"
    go build -ldflags "-s -w" -o "$out/$t" "github.com/fluxcd/$t"
  done
  if [[ ! -x "$out/gitserver" ]]; then
    log "building gitserver (fluxcd/pkg/gittestserver)"
    go build -ldflags "-s -w" -o "$out/gitserver" ./gitserver
  fi
  # The CRDs ship in the controllers' modules, as Flux's install does.
  rm -rf "$out/crds" && mkdir -p "$out/crds"
  for t in source-controller kustomize-controller; do
    cp "$(go list -m -f '{{.Dir}}' "github.com/fluxcd/$t")"/config/crd/bases/*.yaml "$out/crds/"
  done
  chmod -R u+w "$out/crds"
}

build_part() { # part: builds it into its cache dir unless complete; prints nothing
  local part="$1" dir="$cache/parts/$1-${part_key[$1]}"
  if [[ ! -f "$dir/.complete" ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    ("build_$part" "$dir.tmp")
    touch "$dir.tmp/.complete"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
  fi
}

start=$SECONDS
if [[ "$only_flux" == 1 ]]; then
  build_part flux
  log "flux part built in $((SECONDS - start)) s into $flux_dir"
  echo "$flux_dir"
  exit 0
fi
rm -rf "$bin.tmp" && mkdir -p "$bin.tmp"
for part in "${parts[@]}"; do
  dir="$cache/parts/$part-${part_key[$part]}"
  build_part "$part"
  # Hard links: a bin dir costs no space, and outlives the removal of its parts.
  cp -al "$dir/." "$bin.tmp/"
done
rm -f "$bin.tmp/.complete"
rm -rf "$bin" && mv "$bin.tmp" "$bin"

# Older builds are not needed any more, except the one a running local cluster uses.
in_use="$(cat "${DRMESH_CLUSTER_DIR:-$repo/.drmesh/cluster}/bin-path" 2>/dev/null || true)"
find "$cache/bin" -mindepth 1 -maxdepth 1 -type d ! -name "$key" ! -path "$in_use" -exec rm -rf {} +
keep=()
# The real node's and Flux's parts are kept even when this build did not ask for them.
for part in k8s kwok judges node netpol dns images flux; do keep+=(! -name "$part-${part_key[$part]}"); done
find "$cache/parts" -mindepth 1 -maxdepth 1 -type d "${keep[@]}" -exec rm -rf {} +
log "built in $((SECONDS - start)) s into $bin"
echo "$bin"
