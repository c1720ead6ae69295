#!/usr/bin/env bash
# Installs, when missing, the tools the packaging tests call, and prints where they are.
#
#   tools.sh python   a venv (.drmesh/venv) with checkov and kubernetes-validate from PyPI,
#                     pinned by requirements.txt and constraints.txt; prints its bin dir
#   tools.sh lua      the Lua 5.4 interpreter (Debian's lua5.4); prints its path
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

case "${1:-}" in
  python) python_tools ;;
  lua) lua_tool ;;
  *) echo "usage: $0 python|lua" >&2; exit 2 ;;
esac
