#!/usr/bin/env bash
# Makes docs/top.png from the real `holdfast top` screen: two nodes in front
# of a small origin (python3 -m http.server) under a burst of curl traffic,
# `holdfast top` run in tmux on their nodes file, the pane captured with its
# colours, turned into HTML (docs/ansi2html.py) and screenshot by headless
# Chromium. Needs tmux, curl, python3 and chromium. Loopback only; every
# process it starts is stopped at the end.
#
#   docs/top-screenshot.sh [path/to/holdfast]   (default target/debug/holdfast)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/debug/holdfast}")
work=$(mktemp -d)
pids=()
session="holdfast-top-shot-$$"
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; cat "$work/node.log" >&2 2>/dev/null
  return 1
}

mkdir -p "$work/site/assets"
head -c 40000 /dev/zero | tr '\0' 'x' >"$work/site/assets/app-4f2a9c.js"
head -c 9000 /dev/zero | tr '\0' 'y' >"$work/site/assets/logo.svg"
echo '<!doctype html><title>demo</title>' >"$work/site/index.html"
echo 'body{}' >"$work/site/assets/site.css"
# Old files: heuristically fresh for hours (no Cache-Control from this origin).
find "$work/site" -type f -exec touch -d '2 days ago' {} +
origin=$(port)
python3 -m http.server "$origin" --bind 127.0.0.1 --directory "$work/site" >/dev/null 2>&1 &
pids+=($!)
wait_port "$origin"

echo "demo-token-0123456789" >"$work/token"
nodes=()
admins=()
for name in edge-1 edge-2; do
  listen=$(port)
  admin=$(port)
  HOLDFAST_LOG=warn "$bin" serve --listen "127.0.0.1:$listen" --origin "http://127.0.0.1:$origin" \
    --cache-dir "$work/$name" --admin-listen "127.0.0.1:$admin" --admin-token-file "$work/token" \
    2>>"$work/node.log" &
  pids+=($!)
  nodes+=("$listen")
  admins+=("\"http://127.0.0.1:$admin\"")
done
for listen in "${nodes[@]}"; do wait_port "$listen"; done
printf 'shields = []\nedges = [%s]\n' "$(IFS=,; echo "${admins[*]}")" >"$work/nodes.toml"

# About 25 s of traffic, mostly one hot asset; query strings make misses.
traffic() {
  local listen=$1 end=$((SECONDS + 25)) i=0
  while ((SECONDS < end)); do
    i=$((i + 1))
    case $((i % 10)) in
      0) path="/index.html?v=$RANDOM" ;;
      1 | 2) path="/assets/logo.svg" ;;
      3) path="/assets/site.css" ;;
      *) path="/assets/app-4f2a9c.js" ;;
    esac
    curl -s -o /dev/null "http://127.0.0.1:$listen$path" || true
  done
}
for listen in "${nodes[@]}"; do
  traffic "$listen" &
  pids+=($!)
done

tmux new-session -d -s "$session" -x 132 -y 34 \
  "HOLDFAST_ADMIN_TOKEN=demo-token-0123456789 $bin top --nodes-file $work/nodes.toml --interval 2s"
# Two refreshes give rates and the top URLs of a complete interval.
for _ in $(seq 100); do
  screen=$(tmux capture-pane -t "$session" -p)
  if grep -q 'req/s' <<<"$screen" && grep -q 'app-4f2a9c.js' <<<"$screen"; then break; fi
  sleep 0.2
done
sleep 4
tmux capture-pane -t "$session" -p -e >"$work/screen.ansi"
tmux send-keys -t "$session" q

python3 docs/ansi2html.py <"$work/screen.ansi" >"$work/screen.html"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1150,625 \
  --screenshot="$PWD/docs/top.png" "file://$work/screen.html" >/dev/null 2>&1
echo "wrote docs/top.png"
