#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl), kwok, and the independent judges (np-guard's netpolicy)
# from the Go modules pinned next to this script.
# Binaries are cached under $DRMESH_CACHE/bin/<key>, where <key> hashes go.mod/go.sum
# of both modules and the Go version, so a second build costs nothing and a changed
# version rebuilds. Prints the bin directory on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${DRMESH_CACHE:-$HOME/.cache/drmesh}"
k8s_version="$(sed -nE 's/^(require)?[[:space:]]*k8s\.io\/kubernetes (v[0-9.]+).*/\2/p' "$here/k8s/go.mod")"
[[ -n "$k8s_version" ]] || { echo "[build] cannot read the k8s.io/kubernetes version from k8s/go.mod" >&2; exit 1; }
key="$( (cat "$here"/{k8s,kwok,judges}/go.{mod,sum}; go env GOVERSION; echo "$k8s_version") | sha256sum | cut -c1-16)"
bin="$cache/bin/$key"
tools=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok netpolicy)

have_all() { for t in "${tools[@]}"; do [[ -x "$bin/$t" ]] || return 1; done; }
if have_all; then echo "$bin"; exit 0; fi

log() { echo "[build] $*" >&2; }
mkdir -p "$bin.tmp"
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

start=$SECONDS
(
  cd "$here/k8s"
  for t in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$bin.tmp/$t" ]] && continue
    log "building $t $k8s_version"
    go build -tags selinux,notest -ldflags "$ld" -o "$bin.tmp/$t" "k8s.io/kubernetes/cmd/$t"
  done
  if [[ ! -x "$bin.tmp/etcd" ]]; then
    log "building etcd"
    go build -ldflags "-s -w" -o "$bin.tmp/etcd" go.etcd.io/etcd/server/v3
  fi
)
(
  cd "$here/kwok"
  if [[ ! -x "$bin.tmp/kwok" ]]; then
    log "building kwok"
    go build -ldflags "-s -w" -o "$bin.tmp/kwok" sigs.k8s.io/kwok/cmd/kwok
  fi
  # Stage definitions ship inside the kwok module; keep a copy next to the binary.
  stages="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  rm -rf "$bin.tmp/stages" && cp -r "$stages" "$bin.tmp/stages" && chmod -R u+w "$bin.tmp/stages"
)
(
  # Independent judges of what drmesh produces (their own module: their k8s.io deps differ).
  cd "$here/judges"
  if [[ ! -x "$bin.tmp/netpolicy" ]]; then
    log "building netpolicy (np-guard netpol-analyzer)"
    # The checksum database has no entry for this module; go.sum (committed) pins it.
    GONOSUMDB=github.com/np-guard go build -ldflags "-s -w" -o "$bin.tmp/netpolicy" github.com/np-guard/netpol-analyzer/cmd/netpolicy
  fi
)
rm -rf "$bin" && mv "$bin.tmp" "$bin"
# Older builds (other versions) are not needed any more.
find "$cache/bin" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
log "built in $((SECONDS - start)) s into $bin"
echo "$bin"
