#!/usr/bin/env bash
# Instructions the load generators themselves execute per request, counted
# by callgrind: oha per HTTP/3 request (the kit's h3-1k client) and h2load
# per HTTP/2-over-TLS request (its h2tls-1k client, in the kit's shape).
# The kit gives each client one CPU, so when a client needs more work per
# request than the node, the client sets the rate. Counting both against
# the same node shows how far apart they are, repeatably.
#
#   benches/client-instructions.sh [OUT_DIR=target/client-instructions]
#
# Each count is the difference of two runs (6,000 and 2,000 requests for
# oha, 12,000 and 4,000 for h2load) divided by the difference in requests,
# so the clients' start-up and handshakes cancel out. The node is a release
# build (HOLDFAST_BIN= to give one) in front of a `dir:` origin.
#
# Env: HOLDFAST_BIN, TLS_PORT (9293), PORT (9292).
# Needs valgrind, h2load (Debian: nghttp2-client), oha with HTTP/3
# (`cargo install oha --locked --features http3`), openssl, curl.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-target/client-instructions}
port=${PORT:-9292}
tls_port=${TLS_PORT:-9293}
for tool in valgrind h2load oha openssl curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found"; exit 2; }
done
rm -rf "$out" && mkdir -p "$out/assets" && out=$(cd "$out" && pwd)
bin=${HOLDFAST_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin holdfast
  bin=$root/target/release/holdfast
fi
head -c 1024 /dev/urandom >"$out/assets/1k.bin"
test_certificate "$out"

HOLDFAST_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --origin "dir:$out/assets" \
  --tls-listen "127.0.0.1:$tls_port" --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
  --h3 --admin-listen "" >"$out/node.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; true' EXIT
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
  sleep 0.1
done
url=https://127.0.0.1:$tls_port/1k.bin
curl -sk -o /dev/null "$url"

# instructions NAME LABEL FEW MANY COMMAND...: COMMAND gets -n FEW, then -n MANY.
instructions() {
  local name=$1 label=$2 few=$3 many=$4 n total
  shift 4
  declare -A ir
  for n in "$few" "$many"; do
    valgrind --tool=callgrind --callgrind-out-file="$out/$name-$n.cg" "$@" -n "$n" "$url" >"$out/$name-$n.out" 2>&1
    ir[$n]=$(awk '/^summary:/ {print $2}' "$out/$name-$n.cg")
  done
  total=$(( (ir[$many] - ir[$few]) / (many - few) ))
  echo "$name ($label): $total instructions per request"
}

instructions oha "HTTP/3, -c 4" 2000 6000 \
  oha --http-version 3 --insecure --ipv4 --no-tui --output-format json -c 4 | tee "$out/summary.txt"
instructions h2load "HTTP/2 over TLS, -c 16 -m 4" 4000 12000 \
  h2load -c 16 -m 4 | tee -a "$out/summary.txt"
