#!/usr/bin/env bash
# The HTTP caching tests of cache-tests.fyi (github.com/http-tests/cache-tests,
# vendored in suite/, see suite/VENDORED) against a holdfast node in front of
# the suite's own origin server. Fails when a required or optimal test fails
# that expected-failures.txt does not list, or when a listed one passes (so
# the list stays true).
#
#   tests/cache-tests/run.sh [HOLDFAST_BIN]     (needs node >= 18, curl)
#
# HOLDFAST_BIN defaults to target/release/holdfast; results, logs and the
# node's config go to CACHE_TESTS_OUT (target/cache-tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-${HOLDFAST_BIN:-$root/target/release/holdfast}}
out=${CACHE_TESTS_OUT:-$root/target/cache-tests}
mkdir -p "$out"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
node_port=$(free_port)

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
(cd "$here/suite" && npm_config_protocol=http npm_config_port=$origin_port \
  npm_config_pidfile="$out/server.pid" exec node test-engine/server/server.mjs) >"$out/server.log" 2>&1 &
pids+=($!)
HOLDFAST_LOG=${HOLDFAST_LOG:-warn} "$bin" serve --config "$here/holdfast.toml" \
  --listen "127.0.0.1:$node_port" --origin "http://127.0.0.1:$origin_port" --admin-listen "" \
  >"$out/node.log" 2>&1 &
pids+=($!)
up() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }
for _ in $(seq 200); do
  if up "$origin_port" && up "$node_port"; then break; fi
  sleep 0.1
done
up "$origin_port" || { cat "$out/server.log"; echo "cache-tests: the suite's server did not start"; exit 1; }
up "$node_port" || { cat "$out/node.log"; echo "cache-tests: holdfast did not start"; exit 1; }

echo "cache-tests: holdfast on :$node_port, the suite's origin on :$origin_port"
(cd "$here/suite" && npm_config_base="http://127.0.0.1:$node_port" npm_config_id="" npm_package_config_id="" \
  exec node --no-warnings test-engine/cli.mjs) >"$out/results.json" 2>"$out/cli.log"
node "$here/check.mjs" "$out/results.json" "$here/expected-failures.txt"
