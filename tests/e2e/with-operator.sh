#!/usr/bin/env bash
# Runs a command with the drmesh operator running against the local cluster:
# installs the CRDs, starts `drmesh run` (logs and audit stream under .drmesh/e2e/),
# waits until it serves /readyz, runs the command, stops the operator.
#   with-operator.sh COMMAND...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cluster="$here/cluster/cluster.sh"
export KUBECONFIG="${DRMESH_KUBECONFIG:-$("$cluster" kubeconfig)}"
kubectl="$("$cluster" bin)/kubectl"
drmesh="${DRMESH_BIN:-$repo/target/debug/drmesh}"
state="$repo/.drmesh/e2e"
port="${DRMESH_E2E_HTTP_PORT:-18080}"
mkdir -p "$state"

"$drmesh" crds | "$kubectl" apply --server-side --force-conflicts -f - >/dev/null
"$kubectl" wait --for=condition=Established crd --all --timeout=60s >/dev/null

: > "$state/audit.log"
"$drmesh" run --http-addr "127.0.0.1:$port" --audit-log "$state/audit.log" --actor drmesh-e2e \
  > "$state/operator.log" 2>&1 &
operator=$!
stop() { kill -TERM "$operator" 2>/dev/null || true; wait "$operator" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq 1 300); do
  curl -fsS --max-time 1 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$operator" 2>/dev/null || { tail -n 30 "$state/operator.log" >&2; echo "operator exited" >&2; exit 1; }
  sleep 0.1
done
export DRMESH_E2E_AUDIT_LOG="$state/audit.log" DRMESH_E2E_OPERATOR_LOG="$state/operator.log"
export DRMESH_E2E_METRICS="http://127.0.0.1:$port/metrics"
"$@"
