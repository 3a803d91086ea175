#!/bin/bash
# Build an offline Pressluft node root filesystem (Debian bookworm) and pack it as a tarball.
# Usage: build-rootfs.sh <workdir>   ->  <workdir>/rootfs/, <workdir>/rootfs.tar, <workdir>/TAG
# Env: MIRROR, SECURITY_MIRROR, SUITE, CACHE (deb cache shared between builds)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:?workdir}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${CACHE:-<proto>/cache}
ROOT=$WORK/rootfs
PKGS=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HERE/packages.txt" | grep -v '^$' | sort -u | tr '\n' ' ')

TAG=$("$HERE/cache-key.sh")
echo "cache key tag: $TAG"
mkdir -p "$WORK" "$CACHE/debootstrap" "$CACHE/apt-archives/partial"
[ -e "$ROOT" ] && { echo "refusing: $ROOT exists" >&2; exit 1; }

t0=$(date +%s.%N)
stamp() { printf '%-28s %6.1f s\n' "$1" "$(echo "$(date +%s.%N) - $t0" | bc)"; }

# 1. minimal base (no services yet)
debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOT" "$MIRROR" > "$WORK/debootstrap.log"
stamp "debootstrap minbase"

# 2. build-time guards: never start services inside the chroot; no docs/man/locales; no recommends
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"; chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cat > "$ROOT/etc/dpkg/dpkg.cfg.d/01-pressluft-nodoc" <<'X'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
X
cat > "$ROOT/etc/apt/apt.conf.d/01-pressluft" <<'X'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
X
rm -f "$ROOT/etc/apt/sources.list"
cat > "$ROOT/etc/apt/sources.list.d/debian.sources" <<X
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
X

# 3. install the stack with apt (real resolver, -updates and -security included)
cleanup() { umount -l "$ROOT/var/cache/apt/archives" 2>/dev/null || true; umount -l "$ROOT/proc" 2>/dev/null || true; }
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
chroot "$ROOT" apt-get update -qq
stamp "apt-get update"
chroot "$ROOT" apt-get -y -q -o Dpkg::Use-Pty=0 dist-upgrade > "$WORK/apt-upgrade.log" 2>&1
chroot "$ROOT" apt-get -y -q -o Dpkg::Use-Pty=0 install $PKGS > "$WORK/apt-install.log" 2>&1
stamp "apt-get install"
cleanup; trap - EXIT

# 4. node runtime bits + cleanup of per-build / per-host state
install -m 0755 "$HERE/node-init" "$ROOT/usr/local/sbin/node-init"
rm -f "$ROOT"/etc/ssh/ssh_host_*           # per node, injected/generated at start
rm -f "$ROOT/usr/sbin/policy-rc.d"         # without /sbin/init, invoke-rc.d blocks by default anyway
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
rm -rf "$ROOT"/usr/share/doc/*/[!c]* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/*/ 2>/dev/null || true
rm -rf "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/log/*.log "$ROOT"/var/log/apt/* "$ROOT"/root/.bash_history
: > "$ROOT/etc/machine-id"
echo "$TAG" > "$ROOT/etc/pressluft-image"
stamp "cleanup"

# 5. pack (numeric owners; xattrs for file capabilities)
tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -cf "$WORK/rootfs.tar" .
stamp "tar"
echo "$TAG" > "$WORK/TAG"
du -sh "$ROOT" "$WORK/rootfs.tar"
