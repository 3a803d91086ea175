#!/bin/sh
# Content hash of every build input -> image tag. Change any input => new tag => rebuild.
# Inputs: normalized package list, build script, init script, suite/mirror/arch, and an explicit
# EPOCH knob (bump it, or set it to a snapshot.debian.org timestamp, to force picking up updates).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
{
  echo "format=1"
  echo "suite=${SUITE:-bookworm} mirror=${MIRROR:-http://deb.debian.org/debian} sec=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
  echo "arch=$(dpkg --print-architecture) epoch=${EPOCH:-0}"
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HERE/packages.txt" | grep -v '^$' | LC_ALL=C sort -u
  for f in build-rootfs.sh node-init; do echo "== $f"; cat "$HERE/$f"; done
} | sha256sum | cut -c1-16 | sed 's/^/pressluft-node:bookworm-/'
