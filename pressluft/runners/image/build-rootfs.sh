#!/bin/bash
# Build the offline Pressluft node root filesystem (Debian) and pack it as a tarball.
# Usage: build-rootfs.sh <workdir>  ->  <workdir>/rootfs.tar
# Env (set by `pressluft node-image build`): SUITE, MIRROR, SECURITY_MIRROR, CACHE (a
# package cache shared between builds), TAG (the content-hash tag of these inputs).
# Needs root and debootstrap. Never starts a service: policy-rc.d refuses (systemd-sysv
# brings /sbin/init, but no systemd runs in the chroot).
# One image boots two ways: `node-init` (the image's command: init scripts, no systemd) or
# systemd as PID 1 (`/lib/systemd/systemd`, a lab node with `init: systemd`).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${1:?workdir}
: "${SUITE:?}" "${MIRROR:?}" "${SECURITY_MIRROR:?}" "${CACHE:?}" "${TAG:?}"
ROOT=$WORK/rootfs
PKGS=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$HERE/packages.txt" | grep -v '^$' | sort -u | tr '\n' ' ')
mkdir -p "$WORK" "$CACHE/debootstrap" "$CACHE/apt-archives/partial"
[ -e "$ROOT" ] && { echo "refusing: $ROOT exists" >&2; exit 1; }
step() { echo "[$(date +%H:%M:%S)] $*"; }

step "debootstrap $SUITE (minbase)"
debootstrap --variant=minbase --cache-dir="$CACHE/debootstrap" "$SUITE" "$ROOT" "$MIRROR" > "$WORK/debootstrap.log"

# Build-time guards: no service starts in the chroot; no docs, man pages, locales, recommends.
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

# The stack, with apt's resolver and the -updates and -security pockets.
cleanup() {
  umount -l "$ROOT/var/cache/apt/archives" 2>/dev/null || true
  umount -l "$ROOT/proc" 2>/dev/null || true
}
trap cleanup EXIT
mount -t proc proc "$ROOT/proc"
mount --bind "$CACHE/apt-archives" "$ROOT/var/cache/apt/archives"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
step "apt-get update"
chroot "$ROOT" apt-get update -qq
step "apt-get dist-upgrade + install the stack"
chroot "$ROOT" apt-get -y -q -o Dpkg::Use-Pty=0 dist-upgrade > "$WORK/apt-upgrade.log" 2>&1
# shellcheck disable=SC2086
chroot "$ROOT" apt-get -y -q -o Dpkg::Use-Pty=0 install $PKGS > "$WORK/apt-install.log" 2>&1
cleanup
trap - EXIT

# cron's PAM session sets the login uid, which a container may not (no CAP_AUDIT_CONTROL):
# required there, every job would fail before it ran. Optional: set where the kernel lets it.
sed -i -E 's/^(session[[:space:]]+)required([[:space:]]+pam_loginuid\.so)/\1optional\2/' "$ROOT/etc/pam.d/cron"

# Runtime bits; nothing per build or per host stays in the image.
install -m 0755 "$HERE/node-init" "$ROOT/usr/local/sbin/node-init"
# Under systemd, host keys come from this unit (node-init makes them itself): none are baked in,
# and Debian's ssh.service does not create missing ones.
cat > "$ROOT/etc/systemd/system/pressluft-ssh-host-keys.service" <<'X'
[Unit]
Description=Create the SSH host keys this node does not have yet
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
X
ln -sf /etc/systemd/system/pressluft-ssh-host-keys.service \
  "$ROOT/etc/systemd/system/multi-user.target.wants/pressluft-ssh-host-keys.service"
# A container loads no kernel modules: the unit would only fail (and the system be "degraded").
ln -sf /dev/null "$ROOT/etc/systemd/system/systemd-modules-load.service"
rm -f "$ROOT"/etc/ssh/ssh_host_*
rm -f "$ROOT/usr/sbin/policy-rc.d"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/log/*.log \
       "$ROOT"/var/log/apt/* "$ROOT"/root/.bash_history
: > "$ROOT/etc/machine-id"
echo "$TAG" > "$ROOT/etc/pressluft-image"

step "pack"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$ROOT" -cf "$WORK/rootfs.tar" .
step "done"
