#!/usr/bin/env bash
# `make dev`: local cluster + CRDs + operator (in the background) + the reference mesh,
# then a live view until every drmesh object is Ready. DRMESH_REAL_NODE=1: on the real
# node, the products really running the reference product image.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cluster=tests/e2e/cluster/cluster.sh
"$cluster" up >/dev/null
export KUBECONFIG="$("$cluster" kubeconfig)"
kubectl="$("$cluster" bin)/kubectl"
state=.drmesh/dev
mkdir -p "$state"

echo "==> building drmesh"
cargo build --locked --quiet
echo "==> installing the CRDs"
target/debug/drmesh crds | "$kubectl" apply --server-side --force-conflicts -f - >/dev/null
"$kubectl" wait --for=condition=Established crd --all --timeout=60s >/dev/null

if [[ -f "$state/operator.pid" ]] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "==> operator already running (pid $(cat "$state/operator.pid"))"
else
  echo "==> starting the operator (logs: $state/operator.log, audit: $state/audit.log)"
  setsid target/debug/drmesh run --http-addr 127.0.0.1:8080 --audit-log "$state/audit.log" \
    > "$state/operator.log" 2>&1 < /dev/null &
  echo $! > "$state/operator.pid"
fi

echo "==> applying the reference mesh (config/samples, then its dummy credentials), in any order"
if [[ "${DRMESH_REAL_NODE:-0}" == 1 ]]; then
  # On the real node: every product runs the reference product image (docs/local-cluster.md).
  hack/real-node-samples.sh | "$kubectl" apply --server-side -f - >/dev/null
else
  "$kubectl" apply --server-side -f config/samples/ >/dev/null
  "$kubectl" apply --server-side -f config/sample-credentials/ >/dev/null
fi

ready() { # kind -> "ready total"
  "$kubectl" get "$1" -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    awk 'NF{t++} $1=="True"{r++} END{printf "%d %d", r, t}'
}
SECONDS=0
deadline=$((SECONDS + ${DRMESH_DEV_TIMEOUT:-120}))
last=""
while :; do
  line=""; done_all=1
  for kind in datasources dataproducts accesspolicies; do
    read -r r t <<< "$(ready "$kind")"
    line="$line  $kind $r/$t"
    [[ "$r" == "$t" && "$t" != 0 ]] || done_all=0
  done
  [[ "$line" != "$last" ]] && echo "==> Ready after $((SECONDS))s:$line"
  last="$line"
  ((done_all)) && break
  if ((SECONDS > deadline)); then echo "not everything is Ready yet; see the conditions below" >&2; break; fi
  sleep 0.5
done
"$kubectl" get drmesh -A
cat <<MSG

The mesh runs. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl get dp -A                       # products, classification, readiness, consumers
  kubectl describe ap -n police           # grants: purpose, expiry, effective subjects
  kubectl --context alice auth can-i get services/incident-feed:8080 --subresource=proxy -n police
  target/debug/drmesh audit verify $state/audit.log
Stop: make dev-down (operator) and make cluster-down (cluster).
MSG
