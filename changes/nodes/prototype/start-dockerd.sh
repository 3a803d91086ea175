#!/bin/sh
# Private dockerd that leaves the host firewall/forwarding alone (see the shared environment notes).
D=<proto>/docker
mkdir -p $D
nohup dockerd --data-root $D/root --exec-root $D/exec --pidfile $D/dockerd.pid \
  -H unix://$D/docker.sock --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
  --bridge=none --storage-driver=overlay2 > $D/dockerd.log 2>&1 &
for i in $(seq 1 100); do
  DOCKER_HOST=unix://$D/docker.sock docker version >/dev/null 2>&1 && { echo "dockerd ready after $i polls (pid $(cat $D/dockerd.pid))"; exit 0; }
  sleep 0.1
done
echo "dockerd not ready" >&2; exit 1
