#!/usr/bin/env bash
# The regression guard: the load kit's short set for holdfast and its peers
# in one run, printed as ratios: about ten minutes on 2 cores with nginx
# alone, twenty with Varnish and Traffic Server too.
#
#   benches/short.sh [OUT_DIR=target/bench-short]
#
# Tests: h1-1k, h1-keys (10,000 cached 4 KiB objects), h2tls-1k, h3-1k,
# cold (10,000 never-seen keys) and RSS after the 10,000 keys, for a release
# holdfast (built here) beside nginx proxy_cache, Varnish and Traffic Server
# (each one whose server is installed: apt-get install -y varnish
# trafficserver) and the ceiling (the origin nginx serving files), all on
# one origin, via the kit's run-anchors.sh.
#
# Env: HOLDFAST_BENCH_KIT (../shared/bench: the team's kit, with nginx, wrk,
#   h2load and oha built with --features http3 installed as its README says),
#   PEERS (the installed ones of "nginx varnish trafficserver"),
#   ROUNDS (1), DURATION (8 s per throughput test), HOLDFAST_BIN (a binary to
#   measure instead of building one), and what run-anchors.sh reads.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-target/bench-short}
kit=${HOLDFAST_BENCH_KIT:-$root/../shared/bench}
[ -x "$kit/run-anchors.sh" ] || { echo "no bench kit at $kit (set HOLDFAST_BENCH_KIT)"; exit 2; }
rm -rf "$out" && mkdir -p "$out" && out=$(cd "$out" && pwd)

bin=${HOLDFAST_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin holdfast
  bin=$root/target/release/holdfast
fi

state=${BENCH_STATE:-$(mktemp -d /dev/shm/holdfast-short.XXXXXX)}
export BENCH_STATE=$state
node=$out/node
mkdir -p "$node"
test_certificate "$node"
pid=""
# Wait for the node to exit: it drains first, and a next run on the same
# ports would find it still serving.
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; true' EXIT
# The kit pins servers to SERVER_CPUS (CPU 1) and load to LOADGEN_CPUS (CPU 0).
HOLDFAST_LOG=warn taskset -c "${SERVER_CPUS:-1}" "$bin" serve \
  --listen 127.0.0.1:9200 --origin "http://127.0.0.1:${ORIGIN_PORT:-9000}" \
  --tls-listen 127.0.0.1:9443 --tls-cert "$node/cert.pem" --tls-key "$node/key.pem" --h3 \
  --admin-listen "" >"$node/log" 2>&1 &
pid=$!
echo "$pid" >"$node/pid"

if [ -z "${PEERS:-}" ]; then
  PEERS=nginx
  command -v varnishd >/dev/null 2>&1 && PEERS="$PEERS varnish"
  command -v traffic_server >/dev/null 2>&1 && PEERS="$PEERS trafficserver"
fi
echo "peers: $PEERS"
ANCHORS=$PEERS ROUNDS=${ROUNDS:-1} MEM_REPS=${MEM_REPS:-1} DURATION=${DURATION:-8} \
  TESTS=h1-1k,h1-keys,h2tls-1k,h3-1k,cold QUIET_MAX_WAIT_S=${QUIET_MAX_WAIT_S:-30} \
  "$kit/run-anchors.sh" "$out/kit" \
  "holdfast=http://127.0.0.1:9200,h2tls=https://127.0.0.1:9443,h3=https://127.0.0.1:9443,pidfile=$node/pid" \
  >"$out/kit.log" 2>&1 || { tail -30 "$out/kit.log"; exit 1; }

python3 "$root/benches/short_ratios.py" "$out/kit" | tee "$out/ratios.md"
