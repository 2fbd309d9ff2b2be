#!/usr/bin/env bash
# Instructions per cached hit, counted by callgrind: a repeatable measure of
# the node's own work per request, where req/s on a shared VM moves by ±15%
# from run to run. Use it to compare two binaries (before/after a change).
#
#   benches/hit-instructions.sh [OUT_DIR=target/hit-instructions]
#
# Counts, after a warm-up, user-space instructions of the whole node per
# request for: h1 (HTTP/1.1 keep-alive over 2,000 cached 4 KiB objects,
# h2load --h1 -c 8) and h2tls (HTTP/2 over TLS, one 1 KiB object, h2load
# -c 4 -m 4) and, if oha is installed with HTTP/3 (`cargo install oha
# --features http3`), h3 (HTTP/3, one 1 KiB object, oha -c 4, one request at
# a time per connection as browsers and the kit's h3-1k do). The origin is a
# `dir:` origin in OUT_DIR, so nothing else runs.
# Kernel time (the sockets) is not counted: this is what the code controls.
#
# Env: HOLDFAST_BIN (a binary to measure instead of building one),
#   REQUESTS (16000 per protocol), PORT (9290), TLS_PORT (9291).
# Needs valgrind, h2load (Debian: nghttp2-client), openssl, curl.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
root=$(pwd)
out=${1:-target/hit-instructions}
requests=${REQUESTS:-16000}
port=${PORT:-9290}
tls_port=${TLS_PORT:-9291}
for tool in valgrind callgrind_control callgrind_annotate h2load openssl curl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install -y valgrind nghttp2-client openssl curl)"; exit 2; }
done
rm -rf "$out" && mkdir -p "$out/assets/keys" && out=$(cd "$out" && pwd)

bin=${HOLDFAST_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin holdfast
  bin=$root/target/release/holdfast
fi

head -c 1024 /dev/urandom >"$out/assets/1k.bin"
for i in $(seq -f "%04g" 0 1999); do head -c 4096 /dev/urandom >"$out/assets/keys/$i.bin"; done
seq -f "http://127.0.0.1:$port/keys/%04g.bin" 0 1999 >"$out/urls.txt"
test_certificate "$out"

pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi; true' EXIT

# count NAME WARMUP_CMD MEASURED_CMD [SUCCESS_PATTERN]: instructions per
# request of MEASURED_CMD, whose output must match SUCCESS_PATTERN.
count() {
  local name=$1 warm=$2 measured=$3 success=${4:-"$requests succeeded"}
  HOLDFAST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$out/$name.cg" \
    "$bin" serve --listen "127.0.0.1:$port" --origin "dir:$out/assets" \
    --tls-listen "127.0.0.1:$tls_port" --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
    --h3 --admin-listen "" >"$out/$name.log" 2>&1 &
  pid=$!
  local i
  for i in $(seq 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/1k.bin" && break
    sleep 0.1
  done
  eval "$warm" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  eval "$measured" >"$out/$name.load" 2>&1
  grep -q "$success" "$out/$name.load" || { echo "$name: not every request succeeded"; cat "$out/$name.load"; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  local dump total
  dump=$(ls -t "$out/$name.cg."* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  echo "$name: $((total / requests)) instructions per request ($requests requests; profile $dump)"
}

count h1 \
  "h2load --h1 -n $((2000 * 8)) -c 8 -i $out/urls.txt" \
  "h2load --h1 -n $requests -c 8 -i $out/urls.txt" | tee "$out/summary.txt"
count h2tls \
  "h2load -n 2000 -c 4 -m 4 https://127.0.0.1:$tls_port/1k.bin" \
  "h2load -n $requests -c 4 -m 4 https://127.0.0.1:$tls_port/1k.bin" | tee -a "$out/summary.txt"
if command -v oha >/dev/null; then
  oha="oha --http-version 3 --insecure --ipv4 --no-tui --output-format json -c 4"
  count h3 \
    "$oha -n 2000 https://127.0.0.1:$tls_port/1k.bin" \
    "$oha -n $requests https://127.0.0.1:$tls_port/1k.bin" \
    "\"200\": *$requests\\b" | tee -a "$out/summary.txt"
else
  echo "h3: skipped (oha with HTTP/3 not installed)" | tee -a "$out/summary.txt"
fi
