#!/usr/bin/env bash
# Node CPU time per cached 1 KiB hit (user + system, from /proc), with the
# node pinned to one CPU and h2load pinned to another: what the kernel
# costs is counted too, unlike benches/hit-instructions.sh. Use it to
# compare two binaries in alternating runs (req/s alone moves by ±15%
# between runs on a shared VM; CPU per request moves by about 3%).
#
#   benches/cpu-per-request.sh MODE [BIN...]
#
# MODE: h1 (h2load --h1 -c 64), h2c and h2tls (-c 16 -m 4: four requests in
# flight per connection), h2tls1 (-c 16 -m 1: lone requests). Each BIN is
# measured in turn, ROUNDS times (default 3), each over REQUESTS (300000)
# after a 20,000-request warm-up. Without BIN, a release build of this tree.
# Env: NODE_CPU (1), LOAD_CPU (0), PORT (9490), TLS_PORT (9491).
# Needs h2load (Debian: nghttp2-client), openssl, curl, taskset.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mode=${1:?"usage: $0 h1|h2c|h2tls|h2tls1 [BIN...]"}
shift
bins=()
for bin in "$@"; do bins+=("$(realpath "$bin")"); done
cd "$(dirname "$0")/.."
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --release --locked --bin holdfast
  bins=("$(pwd)/target/release/holdfast")
fi
for tool in h2load openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y nghttp2-client openssl curl util-linux)"; exit 2; }
done
requests=${REQUESTS:-300000}
rounds=${ROUNDS:-3}
port=${PORT:-9490}
tls_port=${TLS_PORT:-9491}
node_cpu=${NODE_CPU:-1}
load_cpu=${LOAD_CPU:-0}
case $mode in
  h1) args=(--h1 -c 64 -t 1 "http://127.0.0.1:$port/1k.bin") ;;
  h2c) args=(-c 16 -m 4 -t 1 "http://127.0.0.1:$port/1k.bin") ;;
  h2tls) args=(-c 16 -m 4 -t 1 "https://127.0.0.1:$tls_port/1k.bin") ;;
  h2tls1) args=(-c 16 -m 1 -t 1 "https://127.0.0.1:$tls_port/1k.bin") ;;
  *) echo "unknown mode $mode"; exit 2 ;;
esac

work=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$work"' EXIT
mkdir -p "$work/assets"
head -c 1024 /dev/urandom >"$work/assets/1k.bin"
test_certificate "$work"
ticks_per_second=$(getconf CLK_TCK)

# cpu_ticks PID: user + system time of the process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$rounds"); do
  for bin in "${bins[@]}"; do
    HOLDFAST_LOG=warn taskset -c "$node_cpu" "$bin" serve --listen "127.0.0.1:$port" --origin "dir:$work/assets" \
      --tls-listen "127.0.0.1:$tls_port" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" \
      --admin-listen "" >"$work/node.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
      sleep 0.1
    done
    taskset -c "$load_cpu" h2load "${args[@]}" -n 20000 >/dev/null
    before=$(cpu_ticks "$pid")
    load=$(taskset -c "$load_cpu" h2load "${args[@]}" -n "$requests")
    after=$(cpu_ticks "$pid")
    grep -q "$requests succeeded" <<<"$load" || { echo "$bin: not every request succeeded"; echo "$load"; exit 1; }
    rate=$(awk '/^finished/ {print $4}' <<<"$load")
    micros=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v n="$requests" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    echo "round $round $mode $bin: $micros us of node CPU per request, $rate req/s"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    # The next node binds the same ports: wait until this one let them go.
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null || break
      sleep 0.1
    done
  done
done
