#!/usr/bin/env bash
# make release: what a user installs, under $DRMESH_DIST (default dist/), reproducibly
# (same sources and toolchain in, same bytes out: fixed mtimes, sorted entries, numeric
# ownership, gzip without name or time, paths remapped out of the binary).
#
#   drmesh-VERSION-image.oci.tar        the operator image (images/build.sh operator),
#                                       named drmesh.local/drmesh:VERSION; push it with
#                                       skopeo copy oci-archive:FILE docker://REPO:VERSION
#   drmesh-VERSION.tgz                  the Helm chart, its image pinned to REPO@DIGEST of
#                                       that image (REPO: $DRMESH_IMAGE_REPOSITORY)
#   drmesh-VERSION-linux-amd64.tar.gz   the CLI, statically linked (glibc, crt-static),
#                                       as drmesh and kubectl-drmesh, with completions
#   drmesh-VERSION.cdx.json             CycloneDX SBOM of the binary's crates (cargo-cyclonedx)
#   drmesh.krew.yaml                    krew plugin manifest (`kubectl krew install
#                                       --manifest=drmesh.krew.yaml --archive=...tar.gz`)
#   SHA256SUMS                          of all the above
#
# musl: the x86_64-unknown-linux-musl target cannot be installed here (rustup's
# distribution server is not reachable, only package registries), so the static binary is
# glibc's crt-static build. It runs on any x86_64 Linux; glibc then resolves host names
# without NSS modules (files and DNS only), which is what a CLI and an operator need.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dist="${DRMESH_DIST:-$repo/dist}"
image_repository="${DRMESH_IMAGE_REPOSITORY:-ghcr.io/drmesh/drmesh}"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
triple=x86_64-unknown-linux-gnu
version="$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml | head -1)"
# Every timestamp in the artefacts: the last commit's (or 0 outside git).
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH="$epoch"
tools="$repo/.drmesh/tools"
cyclonedx_version=0.5.9

log() { echo "[release] $*" >&2; }
det_tar() { # dir [entry] -> stdout (gzip -n); entry defaults to "." (the dir's contents)
  tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --format=gnu -C "$1" -cf - "${2:-.}" | gzip -n -9
}

rm -rf "$dist" && mkdir -p "$dist"
work="$(mktemp -d)"
# cargo-cyclonedx (step 5) writes its SBOM next to the Cargo.toml of every package of the
# workspace (the root's and crates/*'s): none is left in the work tree, even on failure.
sboms=()
while IFS= read -r dir; do sboms+=("$dir/drmesh-sbom.json"); done < <(
  cargo metadata --locked --offline --no-deps --format-version 1 |
    python3 -c 'import json, os, sys; print("\n".join(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"]))'
)
[[ " ${sboms[*]} " == *" $repo/drmesh-sbom.json "* ]] || { log "cargo metadata does not list the root package"; exit 1; }
trap 'rm -rf "$work"; rm -f "${sboms[@]}"' EXIT

# 1. The binary: release profile, static, its paths remapped (no home or checkout path).
log "building drmesh $version ($triple, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$HOME=/home --remap-path-prefix=$repo=/drmesh" \
  cargo build --locked --release --bin drmesh --target "$triple" >&2
bin="$target_dir/$triple/release/drmesh"
if ldd "$bin" 2>&1 | grep -q "=>"; then log "$bin is not static"; exit 1; fi

# 2. The operator image, from the same binary.
image="$(images/build.sh operator "$bin")"
cp "$image" "$dist/drmesh-$version-image.oci.tar"
digest="$(tar -xOf "$image" ./index.json | sed -nE 's/.*"digest":"(sha256:[0-9a-f]+)".*/\1/p')"
log "image drmesh.local/drmesh:$version $digest"

# 3. The chart, pinned to that image in the repository the user pushes it to.
helm="$(tests/e2e/cluster/cluster.sh bin)/helm"
cp -r charts/drmesh "$work/drmesh"
sed -i -E "s#^  repository: .*#  repository: $image_repository#; s#^  digest: \"\"#  digest: \"$digest\"#" "$work/drmesh/values.yaml"
grep -q "digest: \"$digest\"" "$work/drmesh/values.yaml" || { log "cannot pin the digest in values.yaml"; exit 1; }
"$helm" lint --strict "$work/drmesh" >&2
"$helm" package "$work/drmesh" -d "$work/package" >&2
# helm package stamps the current time: repacked with fixed times (still a chart archive).
mkdir "$work/chart" && tar --warning=no-timestamp -xzf "$work/package/drmesh-$version.tgz" -C "$work/chart"
# Helm wants the chart's directory as the archive's first path element (drmesh/...).
det_tar "$work/chart" drmesh > "$dist/drmesh-$version.tgz"
"$helm" show chart "$dist/drmesh-$version.tgz" >/dev/null

# 4. The CLI archive (krew wants the plugin as kubectl-drmesh; it is the same binary).
cli="$work/cli"
mkdir -p "$cli/completions"
install -m 0755 "$bin" "$cli/drmesh"
strip --strip-all "$cli/drmesh"
ln -s drmesh "$cli/kubectl-drmesh"
for shell in bash zsh fish; do "$cli/drmesh" completion "$shell" > "$cli/completions/drmesh.$shell"; done
archive="drmesh-$version-linux-amd64.tar.gz"
det_tar "$cli" > "$dist/$archive"

# 5. The SBOM: the crates the drmesh binary is built from (cargo-cyclonedx, pinned). The
# root package's SBOM is the binary's (the workspace's crates among its components); the
# members' are dropped (the trap above).
if [[ ! -x "$tools/bin/cargo-cyclonedx" ]]; then
  log "installing cargo-cyclonedx $cyclonedx_version into $tools"
  cargo install --locked --root "$tools" "cargo-cyclonedx@$cyclonedx_version" >&2
fi
"$tools/bin/cargo-cyclonedx" cyclonedx --format json --spec-version 1.5 --target "$triple" \
  --no-build-deps --override-filename "drmesh-sbom" >&2
# Its serial number and timestamp change every run: fixed from the inputs.
python3 - "$repo/drmesh-sbom.json" "$dist/drmesh-$version.cdx.json" "$epoch" <<'EOF'
import datetime, hashlib, json, sys
src, out, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
bom = json.load(open(src))
bom.pop("serialNumber", None)
bom["metadata"]["timestamp"] = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
text = json.dumps(bom, sort_keys=True, indent=1)
digest = hashlib.sha256(text.encode()).hexdigest()
bom["serialNumber"] = f"urn:uuid:{digest[:8]}-{digest[8:12]}-5{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
open(out, "w").write(json.dumps(bom, sort_keys=True, indent=1) + "\n")
EOF
rm -f "${sboms[@]}"

# 6. The krew manifest, for the archive just built.
sha="$(sha256sum "$dist/$archive" | cut -d' ' -f1)"
sed -e "s/@VERSION@/$version/g" -e "s/@SHA256@/$sha/g" -e "s/@ARCHIVE@/$archive/g" \
  config/krew/drmesh.yaml > "$dist/drmesh.krew.yaml"

(cd "$dist" && sha256sum -- * | grep -v ' SHA256SUMS$' > SHA256SUMS)
log "artefacts in $dist:"
cat "$dist/SHA256SUMS" >&2
