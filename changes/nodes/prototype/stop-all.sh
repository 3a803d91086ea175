#!/bin/sh
# Stop everything this prototype started: managed containers, then the private dockerd (by PID).
export DOCKER_HOST=unix://<proto>/docker/docker.sock
ids=$(docker ps -aq --filter label=pressluft.managed=1)
[ -n "$ids" ] && docker rm -f $ids
P=$(cat <proto>/docker/dockerd.pid 2>/dev/null)
if [ -n "$P" ] && kill -0 "$P" 2>/dev/null; then
  kill -TERM "$P"; for i in $(seq 1 100); do kill -0 "$P" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$P" 2>/dev/null && echo "dockerd $P still running" || echo "dockerd $P stopped"
fi
