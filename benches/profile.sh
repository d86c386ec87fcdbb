#!/usr/bin/env bash
# Where a request's cost goes: instruction counts per request (callgrind; repeatable on a shared
# machine) and a CPU profile under load (perf). Writes target/profile/{callgrind,perf}.txt.
#
#   benches/profile.sh                    # pass-through
#   ROUTE=/jwt benches/profile.sh         # with a JWT session verified (remembered) per request
#   N=5000 benches/profile.sh
#   RUST_LOG=info benches/profile.sh      # with the access log on (default: warn, off)
#   ACCESS_LOG=false RUST_LOG=info benches/profile.sh   # [log] access = false
#   BIN=/tmp/base/handoff SKIP_PERF=1 benches/profile.sh   # another build (before/after), callgrind only
#
# Needs nginx, wrk, python3, valgrind, perf (apt-get install nginx wrk valgrind linux-perf).
set -euo pipefail

N=${N:-2000}
ROUTE=${ROUTE:-/}
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benches/lib.sh"
for tool in nginx wrk python3 valgrind callgrind_control callgrind_annotate perf; do
  command -v "$tool" >/dev/null || { echo "needs $tool"; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin handoff)
fi
bin=${BIN:-"$root/target/release/handoff"}
out="$root/target/profile"
mkdir -p "$out"
setup_work
start_origin
HANDOFF=$(free_port)
# ACCESS_LOG=false: [log] access = false (the line is neither prepared nor written).
# SERVER_EXTRA: more [server] lines, e.g. SERVER_EXTRA='work_stealing = false'.
handoff_config handoff "$HANDOFF" "${SERVER_EXTRA:-}
$( [ -z "${ACCESS_LOG:-}" ] || handoff_log "$ACCESS_LOG" profile)"
TOKEN=$(session_token)

# 1. Instructions per request, under callgrind: counters zeroed after warm-up, dumped after N.
if [ -z "${SKIP_CALLGRIND:-}" ]; then
RUST_LOG=${RUST_LOG:-warn} callgrind_run handoff "$HANDOFF" "$ROUTE" "$N" \
  "$bin" run --config "$work/handoff.toml"
dump=$CALLGRIND_DUMP
cp "$dump" "$out/callgrind.out"
callgrind_annotate --threshold=100 "$dump" > "$out/callgrind.txt" 2>/dev/null || true
callgrind_annotate --inclusive=yes --threshold=100 "$dump" > "$out/callgrind-inclusive.txt" 2>/dev/null || true
total=$CALLGRIND_TOTAL
echo "callgrind: ${total:-?} instructions for $N requests to $ROUTE → $(python3 -c "print(round(${total:-0}/$N))") per request"
echo "  top functions (self): $out/callgrind.txt, (inclusive): $out/callgrind-inclusive.txt"
fi

# 2. perf under load.
[ -z "${SKIP_PERF:-}" ] || exit 0
RUST_LOG=${RUST_LOG:-warn} "$bin" run --config "$work/handoff.toml" 2>"$work/handoff.err" &
pids+=($!)
H=$!
wait_port "$HANDOFF"
wrk -t1 -c32 -d12s -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$HANDOFF$ROUTE" >/dev/null &
WRK=$!
sleep 2
perf record -F 2999 -g -o "$work/perf.data" -p "$H" -- sleep 8 >"$work/perf.err" 2>&1 \
  || { echo "perf record failed:"; cat "$work/perf.err"; exit 1; }
wait "$WRK"
perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null \
  | grep -v "^$" | head -120 > "$out/perf.txt" || true
perf report -i "$work/perf.data" --stdio --no-children --sort dso 2>/dev/null \
  | grep -E '^ +[0-9]' > "$out/perf-dso.txt" || true
echo "perf: $out/perf.txt (by symbol), $out/perf-dso.txt (by binary)"
cat "$out/perf-dso.txt"
