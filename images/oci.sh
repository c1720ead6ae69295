#!/usr/bin/env bash
# Assembles a one-layer OCI image archive (an OCI image layout in a tar) from a directory,
# reproducibly: same files and config in, same bytes and digest out (no timestamps,
# sorted entries, numeric root ownership, gzip without name or time).
#
#   oci.sh OUT.tar NAME:TAG ROOTFS-DIR CONFIG-JSON
#
# CONFIG-JSON is the image's runtime config ({"Entrypoint": [...], "Env": [...], ...}).
# The archive is what `ctr images import` and `docker load`/`podman load` take; its index
# names the image (io.containerd.image.name) so that the runtime finds it by NAME:TAG.
set -euo pipefail
out="$1" ref="$2" rootfs="$3" config="$4"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp" && mkdir -p "$tmp/blobs/sha256"

det_tar() { # dir -> stdout
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu -C "$1" -cf - .
}
blob() { # file -> prints "digest size", moves the file into blobs/
  local d s
  d="$(sha256sum "$1" | cut -d' ' -f1)"
  s="$(stat -c %s "$1")"
  mv "$1" "$tmp/blobs/sha256/$d"
  echo "sha256:$d $s"
}

det_tar "$rootfs" > "$tmp/layer.tar"
diff_id="sha256:$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
gzip -n -9 "$tmp/layer.tar"
read -r layer_digest layer_size < <(blob "$tmp/layer.tar.gz")

printf '{"architecture":"amd64","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$config" "$diff_id" > "$tmp/config.json"
read -r config_digest config_size < <(blob "$tmp/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" > "$tmp/manifest.json"
read -r manifest_digest manifest_size < <(blob "$tmp/manifest.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$ref" "${ref##*:}" > "$tmp/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$tmp/oci-layout"
det_tar "$tmp" > "$out.tmp"
mv "$out.tmp" "$out"
echo "$manifest_digest"
