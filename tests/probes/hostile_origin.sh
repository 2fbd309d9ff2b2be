#!/usr/bin/env bash
# Every case of hostile_origin.py, fetched twice through a node (curl, with
# Accept-Encoding: gzip), 8 at a time: status / x-cache / body bytes / curl
# exit code per request, then whether the node is still up and any panic in
# its log. A clear 5xx, or a 200 stored whole, is what a case should give
# (curl exit 18, a 200 cut off, when the origin broke its body after the
# client's response began); curl exit 52 (empty reply) or a panic is a bug.
#   tests/probes/hostile_origin.sh [HOLDFAST_BIN]   (default target/debug/holdfast)
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../../target/debug/holdfast}
d=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
op=$(port); np=$(port)
python3 "$here/hostile_origin.py" "$op" & opid=$!
printf '[origin]\nhealth_check_path = ""\n[log]\naccess = "stdout"\naccess_format = "plain"\n' >"$d/node.toml"
"$bin" serve --config "$d/node.toml" --listen "127.0.0.1:$np" --origin "http://127.0.0.1:$op" --admin-listen "" >"$d/node.log" 2>&1 & npid=$!
trap 'kill $npid $opid 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$np/case/none" && break; sleep 0.1; done
one() {
  local c=$1 out="" i r rc xc
  for i in 1 2; do
    r=$(curl -s -o "$d/$c.$i.body" -D "$d/$c.$i.head" -w '%{http_code}' --max-time 30 -H 'Accept-Encoding: gzip' "http://127.0.0.1:$np/case/$c"); rc=$?
    xc=$(grep -i '^x-cache:' "$d/$c.$i.head" | tr -d '\r' | awk '{print $2}')
    out="$out  $r/${xc:--}/$(stat -c %s "$d/$c.$i.body" 2>/dev/null || echo 0)b/rc$rc"
  done
  printf '%-20s %s\n' "$c" "$out"
}
export -f one; export d np
python3 "$here/hostile_origin.py" list | xargs -P 8 -I{} bash -c 'one {}' | sort
if kill -0 "$npid" 2>/dev/null; then echo "node: still serving"; else echo "node: DEAD"; fi
echo "panics in the node's log: $(grep -ci panic "$d/node.log")"
