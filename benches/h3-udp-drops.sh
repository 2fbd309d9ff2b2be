#!/usr/bin/env bash
# Datagrams the kernel drops at the node's HTTP/3 socket, and what they do
# to latency: oha --http-version 3 with many connections against cached
# 1 KiB hits, once per socket buffer size, alternating. A drop shows as
# UdpRcvbufErrors in /proc/net/snmp (machine-wide: run it on a quiet
# machine) and costs its connection a loss timeout.
#
#   benches/h3-udp-drops.sh [BUFFER...]
#
# BUFFER: values of tls.h3_socket_buffer (default: 0, the system's size,
# and 4MiB, holdfast's default). Env: ROUNDS (2), CONNS (256), RUN_SECONDS (8),
# NODE_CPU (1), LOAD_CPU (0), TLS_PORT (9491), HOLDFAST_BIN (a release
# build of this tree). Needs oha built with HTTP/3 (cargo install oha
# --locked --features http3), openssl, curl, taskset.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
buffers=("$@")
[ ${#buffers[@]} -gt 0 ] || buffers=(0 4MiB)
cd "$(dirname "$0")/.."
bin=${HOLDFAST_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin holdfast
  bin="$(pwd)/target/release/holdfast"
fi
for tool in oha openssl curl taskset; do
  command -v "$tool" >/dev/null || { echo "$tool not found"; exit 2; }
done
rounds=${ROUNDS:-2}
conns=${CONNS:-256}
seconds=${RUN_SECONDS:-8}
tls_port=${TLS_PORT:-9491}
node_cpu=${NODE_CPU:-1}
load_cpu=${LOAD_CPU:-0}
echo "net.core.rmem_max=$(sysctl -n net.core.rmem_max) net.core.wmem_max=$(sysctl -n net.core.wmem_max)"

work=$(mktemp -d)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; rm -rf "$work"' EXIT
mkdir -p "$work/assets"
head -c 1024 /dev/urandom >"$work/assets/1k.bin"
test_certificate "$work"

drops() { awk '/^Udp:/ { value = $6 } END { print value }' /proc/net/snmp; }

for round in $(seq "$rounds"); do
  for buffer in "${buffers[@]}"; do
    cat >"$work/node.toml" <<TOML
[server]
listen = []
[origin]
urls = ["dir:$work/assets"]
[admin]
listen = ""
[tls]
listen = ["127.0.0.1:$tls_port"]
h3 = true
h3_socket_buffer = "$buffer"
[[tls.certificate]]
cert = "$work/cert.pem"
key = "$work/key.pem"
TOML
    HOLDFAST_LOG=warn taskset -c "$node_cpu" "$bin" serve --config "$work/node.toml" >"$work/node.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$tls_port/1k.bin" && break; sleep 0.1; done
    before=$(drops)
    out=$(taskset -c "$load_cpu" oha -z "${seconds}s" -c "$conns" --http-version 3 --insecure --ipv4 --no-tui \
      "https://127.0.0.1:$tls_port/1k.bin")
    after=$(drops)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    rate=$(awk '/Requests\/sec/ { printf "%d", $2 }' <<<"$out")
    p99=$(awk '/ 99.00% in/ { print $3, $4 }' <<<"$out")
    p999=$(awk '/ 99.90% in/ { print $3, $4 }' <<<"$out")
    slowest=$(awk '/Slowest:/ { print $2, $3 }' <<<"$out")
    printf 'round %d  h3_socket_buffer=%-6s %7s req/s  drops %6d  p99 %s  p99.9 %s  slowest %s\n' \
      "$round" "$buffer" "$rate" $((after - before)) "$p99" "$p999" "$slowest"
    grep -h "smaller buffers" "$work/node.log" | head -1 || true
  done
done
