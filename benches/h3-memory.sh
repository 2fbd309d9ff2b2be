#!/usr/bin/env bash
# HTTP/3 memory under load: RSS of a release node before, during and after
# a long HTTP/3 load on long-lived connections, and the cost of idle
# connections. Loopback only; needs oha built with HTTP/3
# (`cargo install oha --locked --features http3`) and openssl.
#
#   benches/h3-memory.sh [SECONDS=60] [CONNECTIONS=64] [IDLE=1000]
#
# Prints one line per phase: RSS in MiB and what ran.
set -euo pipefail
# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$(dirname "$0")/.."
seconds=${1:-60}; conns=${2:-64}; idle=${3:-1000}
oha=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[ -x "$oha" ] || { echo "oha not found (cargo install oha --locked --features http3)"; exit 2; }
cargo build --release --locked --bin holdfast >/dev/null 2>&1 || cargo build --release --locked --bin holdfast

work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/site"
head -c 1024 /dev/urandom >"$work/site/1k.bin"
test_certificate "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain=$(port); tls=$(port)
target/release/holdfast serve --listen "127.0.0.1:$plain" --origin "dir:$work/site" \
  --tls-listen "127.0.0.1:$tls" --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --h3 \
  --admin-listen "" >"$work/node.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$plain/1k.bin" && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status"; }
url="https://localhost:$tls/1k.bin"

echo "start: $(rss) MiB"
"$oha" --no-tui -z "${seconds}s" -c "$conns" --http-version 3 --insecure --ipv4 "$url" >"$work/load.txt" 2>&1 &
load=$!
peak=0
while kill -0 $load 2>/dev/null; do
  now=$(rss); peak=$(python3 -c "print(max($peak, $now))"); sleep 1
done
wait $load || true
rate=$(grep -E 'Requests/sec' "$work/load.txt" | awk '{print $2}')
ok=$(grep -E 'Success rate' "$work/load.txt" | awk '{print $3}')
echo "after ${seconds}s of HTTP/3 load on $conns connections: $(rss) MiB (peak $peak MiB; $rate req/s by oha, success $ok)"
sleep 2
echo "idle again: $(rss) MiB"

base=$(rss)
"$oha" --no-tui -z 15s -c "$idle" -q "$idle" --http-version 3 --insecure --ipv4 "$url" >"$work/idle.txt" 2>&1 &
load=$!
sleep 10
open=$(rss)
wait $load || true
per=$(python3 -c "print(round(($open - $base) * 1024 / $idle, 1))")
echo "$idle open connections (1 request/s each): $open MiB, about $per KiB per connection"
sleep 2
echo "after they closed: $(rss) MiB"
