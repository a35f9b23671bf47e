#!/usr/bin/env bash
# Runs every test of the project: unit tests, black-box integration tests against the real
# binary, and the end-to-end suites. Installs what the tests need when it is missing, and
# fails (never skips) when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cargo >/dev/null || { echo "test.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
# Cluster-mode tests start their own redis-server processes on free ports.
command -v redis-server >/dev/null || need_apt+=(redis-server)
# End-to-end tests drive Debian's chromium with playwright-core (no browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_apt[@]}"
fi
command -v redis-server >/dev/null || { echo "test.sh: redis-server could not be installed" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "test.sh: /usr/bin/chromium could not be installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "test.sh: node and npm could not be installed" >&2; exit 1; }
if [ ! -d e2e/node_modules ]; then
  echo "test.sh: installing the e2e dependencies (npm ci)"
  (cd e2e && npm ci --no-audit --no-fund)
fi

cargo test --workspace --all-targets
# The HTTP API against docs/openapi.json (schemathesis, installed into .venv-test/).
./scripts/schemathesis.sh
# End-to-end: real browsers against the binary cargo test built (the demo page, y-webrtc).
[ -x target/debug/switchboard ] || cargo build
(cd e2e && npm test)
# A short churn soak on the debug build (the 3-minute one: see docs/security.md).
cargo build -q -p switchboard-soak --bin switchboard-soak
./target/debug/switchboard-soak --duration 20s --peers 300 --pairs 8 --server target/debug/switchboard
