#!/usr/bin/env bash
# Runs two Switchboard instances that share rooms through a local Redis: HTTP on 3000 and
# 4000, signaling on 3001 and 4001. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { echo "cluster.sh: install redis-server first (apt-get install redis-server)" >&2; exit 1; }

REDIS_PORT=${REDIS_PORT:-6390}
JWT_SECRET=${JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export JWT_SECRET REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/"

cargo build --release
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null & pids+=($!)
PORT=3000 SIGNALING_PORT=3001 ./target/release/switchboard & pids+=($!)
PORT=4000 SIGNALING_PORT=4001 ./target/release/switchboard & pids+=($!)
wait
