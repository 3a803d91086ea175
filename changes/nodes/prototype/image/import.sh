#!/bin/sh
# Import a built rootfs tarball as a docker image tagged with its input hash. Skips if the tag exists.
set -eu
WORK=${1:?workdir with rootfs.tar and TAG}
TAG=$(cat "$WORK/TAG")
if docker image inspect "$TAG" >/dev/null 2>&1; then echo "cached: $TAG"; exit 0; fi
docker import \
  --change 'CMD ["/usr/local/sbin/node-init"]' \
  --change 'EXPOSE 22 80 443' \
  --change "LABEL pressluft.image.inputs=$TAG" \
  "$WORK/rootfs.tar" "$TAG"
