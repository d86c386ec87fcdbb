#!/usr/bin/env bash
# Pass-through A/B of two handoff binaries, side by side: both run at once (one thread each,
# same config, same origin nginx) and wrk alternates between them, ROUNDS times 5 s at 64
# connections. Prints CPU µs per request, req/s and errors per round for each.
#
#   benches/ab.sh OLD_BINARY NEW_BINARY
#   e.g. git worktree add /tmp/before main && (cd /tmp/before && cargo build --release) &&
#        cargo build --release && benches/ab.sh /tmp/before/target/release/handoff target/release/handoff
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${ROUNDS:-6}
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
setup_work
start_origin
A=$(free_port); B=$(free_port)
handoff_config a "$A"; handoff_config b "$B"
RUST_LOG=warn "$OLD" run --config $work/a.toml 2>$work/a.err & PA=$!; pids+=("$PA")
RUST_LOG=warn "$NEW" run --config $work/b.toml 2>$work/b.err & PB=$!; pids+=("$PB")
wait_port $A; wait_port $B
HZ=$(getconf CLK_TCK)
cat > $work/r.lua <<'L'
done = function(s) io.write(string.format("REQS %d %d\n", s.requests, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status)) end
L
one() { local pid=$1 port=$2 t0 t1 out reqs errs
  t0=$(ticks $pid)
  out=$(wrk -t1 -c64 -d5s -s $work/r.lua http://127.0.0.1:$port/ 2>&1 | awk '/^REQS/ {print $2, $3}')
  t1=$(ticks $pid); read -r reqs errs <<<"$out"
  python3 -c "print(f'{($t1-$t0)/$HZ*1e6/$reqs:.1f} {$reqs/5:.0f} {$errs}')"
}
echo "round: old cpu-µs/req req/s errors | new cpu-µs/req req/s errors"
for round in $(seq "$ROUNDS"); do
  echo "round $round: old $(one $PA $A) | new $(one $PB $B)"
done
