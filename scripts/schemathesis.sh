#!/usr/bin/env bash
# Property-based tests of the HTTP API against docs/openapi.json with schemathesis, on the
# real binary: every operation, without keys and with ADMIN_API_KEY/ISSUER_API_KEY set. Fails
# on any 5xx, any answer (status, content type, body, headers) the document does not
# describe, any error not shaped {"error": {"code", "message"}}, and any panic in the server
# log. Run by scripts/test.sh after `cargo test` built target/debug/switchboard.
#
#   SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 25)
#   SCHEMATHESIS_SEED      generation seed (default fixed, so CI runs are repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.32.5
VENV=.venv-test
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-25}
SEED=${SCHEMATHESIS_SEED:-20261122}
BIN="$PWD/target/debug/switchboard"
KEY=schemathesis-admin-and-issuer-key

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "schemathesis.sh: installing schemathesis $VERSION into $VENV"
  python3 -m venv "$VENV" || { echo "schemathesis.sh: cannot create $VENV (python3 -m venv)" >&2; exit 1; }
  "$VENV/bin/pip" install -q "schemathesis==$VERSION" \
    || { echo "schemathesis.sh: cannot install schemathesis from PyPI" >&2; exit 1; }
fi
[ -x "$BIN" ] || cargo build --bin switchboard

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

# start_server LOG [VAR=VALUE...]: starts the binary on free ports, sets SERVER_PID and URL.
start_server() {
  local log=$1
  shift
  (cd "$WORK" && exec env -i PATH="$PATH" HOST=127.0.0.1 PORT=0 SIGNALING_PORT=0 \
    LOG_FORMAT=json RUST_LOG=info \
    JWT_SECRET=schemathesis-jwt-secret-0123456789abcdef0123 "$@" \
    "$BIN") >"$log" 2>&1 &
  SERVER_PID=$!
  local addr=
  for _ in $(seq 1 100); do
    addr=$(grep -o '"http_addr":"[^"]*"' "$log" | head -1 | cut -d'"' -f4 || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "schemathesis.sh: server did not start:" >&2; cat "$log" >&2; exit 1; }
  URL="http://$addr"
}

# run NAME [schemathesis options...]: one schemathesis run against the current server.
run() {
  local name=$1
  shift
  echo "schemathesis.sh: $name"
  # One worker: with two, hypothesis describes strategies by parsing source with `ast` from
  # two threads at once, which CPython 3.11 sometimes fails ("AST constructor recursion
  # depth mismatch"), turning a green run red for no reason of ours.
  if ! "$VENV/bin/schemathesis" --config-file scripts/schemathesis.toml run "$URL/openapi.json" \
    --checks all --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
    --generation-database none --no-color --suppress-health-check all "$@" \
    >"$WORK/$name.out" 2>&1; then
    cat "$WORK/$name.out"
    echo "schemathesis.sh: $name failed" >&2
    exit 1
  fi
  grep -E "passed|failed|generated" "$WORK/$name.out" | tail -3 | sed "s/^/  /"
}

check_log() {
  if grep -q "panicked" "$1"; then
    grep "panicked" "$1" >&2
    echo "schemathesis.sh: the server panicked" >&2
    exit 1
  fi
}

# Without keys, admin calls answer 403 FORBIDDEN whatever the request (docs/protocol.md#7-rooms-over-http): the
# "missing header gives 401" check is for the run with keys.
start_server "$WORK/anonymous.log"
run "no keys" --exclude-checks missing_required_header
stop_server
check_log "$WORK/anonymous.log"

# With keys. Lowering the memory thresholds makes the server critical (503 by design), so
# that operation gets a server of its own.
start_server "$WORK/keys.log" ADMIN_API_KEY=$KEY ISSUER_API_KEY=$KEY
run "admin and issuer keys" -H "Authorization: Bearer $KEY" \
  --exclude-operation-id setMemoryThresholds
stop_server
check_log "$WORK/keys.log"

start_server "$WORK/thresholds.log" ADMIN_API_KEY=$KEY ISSUER_API_KEY=$KEY
run "admin key, memory thresholds" -H "Authorization: Bearer $KEY" \
  --include-operation-id setMemoryThresholds
stop_server
check_log "$WORK/thresholds.log"
echo "schemathesis.sh: 3 runs passed"
