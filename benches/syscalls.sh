#!/usr/bin/env bash
# System calls per request of a handoff binary under load, with the access log on:
#
#   benches/syscalls.sh target/release/handoff
#
# nginx serves a 100-byte page; the gateway (one thread) proxies it; wrk -t1 -c8 runs 3 s while
# `strace -f -c` counts the gateway's calls; prints the busiest calls ÷ requests served.
# Needs nginx, wrk, strace, python3.
set -euo pipefail
bin=${1:?usage: benches/syscalls.sh BINARY}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benches/lib.sh"
for tool in nginx wrk strace python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool"; exit 1; }
done
setup_work
start_origin
HANDOFF=$(free_port)
handoff_config handoff "$HANDOFF"
RUST_LOG=info "$bin" run --config "$work/handoff.toml" 2>/dev/null &
gw=$!; pids+=("$gw")
wait_port "$HANDOFF"
wrk -t1 -c8 -d2s "http://127.0.0.1:$HANDOFF/" >/dev/null   # warm-up
strace -f -c -p "$gw" -o "$work/strace.txt" 2>/dev/null &
st=$!
sleep 0.5
out=$(wrk -t1 -c8 -d3s "http://127.0.0.1:$HANDOFF/")
sleep 0.3
kill -INT "$st"; wait "$st" 2>/dev/null || true
requests=$(echo "$out" | awk '/requests in/ {print $1}')
echo "$(basename "$bin"): $requests requests"
awk -v n="$requests" 'NR > 2 && $NF ~ /^[a-z_0-9]+$/ && $4 + 0 > 0 {
  printf "  %-16s %8.2f per request\n", $NF, $4 / n }' "$work/strace.txt" | sort -k2 -nr | head -8
