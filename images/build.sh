#!/usr/bin/env bash
# Assembles drmesh's OCI image archives, reproducibly (oci.sh), and prints the path of
# the archive. No Docker daemon and no registry: the real node imports them (node.sh).
#
#   build.sh product BIN     the reference product: BIN (images/product) as /bin/product
#   build.sh pause BIN       the pod sandbox: BIN (images/pause) as /pause
#   build.sh coredns BIN     cluster DNS: BIN (tests/e2e/cluster/dns) as /coredns
#   build.sh operator BIN    the operator: BIN (target/*/drmesh) as /drmesh, with the
#                            shared libraries it links (ldd) when it is not static
#
# Binaries are stripped of debug information.
#
# Archives are cached under $DRMESH_CACHE/images/, keyed by what goes in them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cache="${DRMESH_CACHE:-$HOME/.cache/drmesh}/images"
kind="${1:?usage: build.sh product|pause|coredns|operator BIN}"
binary="$(readlink -f "${2:?usage: build.sh KIND BIN}")"
[[ -x "$binary" ]] || { echo "[image] no executable at $binary" >&2; exit 1; }

nonroot='"User":"65532:65532"'
case "$kind" in
  product)
    ref=drmesh.local/product:1 path=/bin/product
    config='{"Entrypoint":["/bin/product"],"Cmd":["serve"],"Env":["PATH=/bin"],'"$nonroot"',"ExposedPorts":{"8080/tcp":{}}}' ;;
  pause)
    ref=drmesh.local/pause:1 path=/pause
    config='{"Entrypoint":["/pause"],'"$nonroot"'}' ;;
  coredns)
    ref=drmesh.local/coredns:1 path=/coredns
    config='{"Entrypoint":["/coredns"],'"$nonroot"'}' ;;
  operator)
    version="$(sed -nE 's/^version = "(.*)"/\1/p' "$repo/Cargo.toml" | head -1)"
    ref="drmesh.local/drmesh:$version" path=/drmesh
    config='{"Entrypoint":["/drmesh"],"Cmd":["run","--http-addr=0.0.0.0:8080","--log-json"],'"$nonroot"',"ExposedPorts":{"8080/tcp":{}}}' ;;
  *) echo "[image] unknown image $kind" >&2; exit 2 ;;
esac

# Shared libraries a dynamically linked binary needs (none for Go's static binaries).
libs() { ldd "$binary" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true; }
key="$( (echo "$kind $ref $config"; sha256sum "$binary" | cut -d' ' -f1; for l in $(libs); do sha256sum "$(readlink -f "$l")"; done
  cat "$here/oci.sh" "$here/build.sh") | sha256sum | cut -c1-16)"
out="$cache/$kind-$key.tar"
if [[ -f "$out" ]]; then echo "$out"; exit 0; fi

mkdir -p "$cache"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
install -D -m 0755 "$binary" "$root$path"
# Debug information stays out of images (a debug build of drmesh carries ~350 MB of it).
strip --strip-debug "$root$path"
for l in $(libs); do install -D -m 0755 "$(readlink -f "$l")" "$root$l"; done
install -d -m 1777 "$root/tmp"
printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/:/sbin/nologin\n' > "$root/etc.passwd"
install -D -m 0644 "$root/etc.passwd" "$root/etc/passwd" && rm "$root/etc.passwd"
digest="$("$here/oci.sh" "$out.tmp" "$ref" "$root" "$config")"
mv "$out.tmp" "$out"
# Older archives of this image are not needed any more (rebuilding one takes seconds).
find "$cache" -maxdepth 1 -name "$kind-*.tar" ! -name "$(basename "$out")" -delete
echo "[image] $ref $digest -> $out" >&2
echo "$out"
