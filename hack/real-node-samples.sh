#!/usr/bin/env bash
# Prints the reference mesh (config/samples and, after its namespaces, the dummy
# credentials of config/sample-credentials; or the files given) for the real node: each
# product runs the reference product image (images/product) listening on its output
# ports, and each domain's namespace places its pods on the real node.
#   hack/real-node-samples.sh [FILE...] | kubectl apply --server-side -f -
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(($# > 0)) || set -- "$repo"/config/samples/*.yaml "$repo"/config/sample-credentials/*.yaml
for f in "$@"; do cat "$f"; echo "---"; done | awk '
  function flush(   i, ports, sep, line) {
    if (is_product) {
      ports = ""; sep = ""
      for (i = 1; i <= n; i++) if (doc[i] ~ /^ +port: [0-9]+/) { line = doc[i]; sub(/^ +port: /, "", line); ports = ports sep "\"--listen=:" line "\""; sep = ", " }
    }
    for (i = 1; i <= n; i++) {
      if (is_product && doc[i] ~ /^    (command|args):/) continue
      if (is_product && doc[i] ~ /^    image: /) { print "    image: drmesh.local/product:1"; print "    args: [" ports "]"; continue }
      print doc[i]
      if (is_namespace && doc[i] ~ /^metadata:/) {
        print "  annotations:"
        print "    scheduler.alpha.kubernetes.io/node-selector: drmesh.io/node=real"
        print "    scheduler.alpha.kubernetes.io/defaultTolerations: '\''[{\"key\":\"drmesh.io/real-node\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}]'\''"
      }
    }
    n = 0; is_product = 0; is_namespace = 0
  }
  /^---/ { flush(); print; next }
  { doc[++n] = $0; if ($0 ~ /^kind: DataProduct/) is_product = 1; if ($0 ~ /^kind: Namespace/) is_namespace = 1 }
  END { flush() }
'
