#!/usr/bin/env bash
# Installs, when missing, the tools the packaging tests call, and prints where they are.
#
#   tools.sh python   a venv (.drmesh/venv) with checkov and kubernetes-validate from PyPI,
#                     pinned by requirements.txt and constraints.txt; prints its bin dir
#   tools.sh lua      the Lua 5.4 interpreter (Debian's lua5.4); prints its path
#   tools.sh promtool Prometheus's promtool, built from the Go modules pinned by
#                     promtool/go.mod (its service discoveries left out: -tags
#                     remove_all_sd) into $DRMESH_CACHE/tools/; prints its path
#
# Idempotent and quiet on success; a stamp file holding the hash of the pins makes the
# second call free and a changed pin reinstall.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
log() { echo "[tools] $*" >&2; }

python_tools() {
  local venv="${DRMESH_VENV:-$repo/.drmesh/venv}"
  local want
  want="$(cat "$here/requirements.txt" "$here/constraints.txt" | sha256sum | cut -c1-16)"
  if [[ -x "$venv/bin/checkov" && -x "$venv/bin/kubernetes-validate" && "$(cat "$venv/.pins" 2>/dev/null)" == "$want" ]]; then
    echo "$venv/bin"; return 0
  fi
  # One installer at a time: tests running in parallel share the venv.
  mkdir -p "$(dirname "$venv")"
  exec 9>"$venv.lock"
  flock 9
  if [[ -x "$venv/bin/checkov" && "$(cat "$venv/.pins" 2>/dev/null)" == "$want" ]]; then
    echo "$venv/bin"; return 0
  fi
  log "installing checkov and kubernetes-validate into $venv (a few minutes, once)"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$here/requirements.txt" -c "$here/constraints.txt" >&2
  echo "$want" > "$venv/.pins"
  echo "$venv/bin"
}

lua_tool() {
  local lua
  if ! lua="$(command -v lua5.4)"; then
    exec 9>/tmp/drmesh-apt.lock
    flock 9
    if ! lua="$(command -v lua5.4)"; then
      log "installing lua5.4 (Debian)"
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lua5.4 >&2
      lua="$(command -v lua5.4)"
    fi
  fi
  echo "$lua"
}

promtool_tool() {
  local mod="$here/promtool" cache key out version
  cache="${DRMESH_CACHE:-$HOME/.cache/drmesh}/tools"
  key="$( (cat "$mod/go.mod" "$mod/go.sum"; go env GOVERSION) | sha256sum | cut -c1-16)"
  out="$cache/promtool-$key"
  if [[ -x "$out/promtool" ]]; then echo "$out/promtool"; return 0; fi
  mkdir -p "$cache"
  exec 9>"$cache/promtool.lock"
  flock 9
  if [[ -x "$out/promtool" ]]; then echo "$out/promtool"; return 0; fi
  version="$(sed -nE 's/^(require)?[[:space:]]*github\.com\/prometheus\/prometheus (v[0-9.]+).*/\2/p' "$mod/go.mod")"
  log "building promtool (github.com/prometheus/prometheus $version) into $out (a few minutes, once)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  (cd "$mod" && CGO_ENABLED=0 GOFLAGS="-mod=mod -trimpath" go build -tags remove_all_sd -ldflags "-s -w" \
    -o "$out.tmp/promtool" github.com/prometheus/prometheus/cmd/promtool) >&2
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "$out/promtool"
}

case "${1:-}" in
  python) python_tools ;;
  lua) lua_tool ;;
  promtool) promtool_tool ;;
  *) echo "usage: $0 python|lua|promtool" >&2; exit 2 ;;
esac
