#!/usr/bin/env bash
# Pass-through A/B of two handoff binaries, side by side with nginx doing the same work: all
# three run at once (one thread / one worker each, the same origin nginx) and wrk alternates
# between them, ROUNDS times 5 s at 64 connections. Handoff runs with its defaults (the JSON
# access log on, to a file); nginx writes a JSON access line per request in batches and sends
# X-Forwarded-For/-Proto/-Host (lib.sh). Prints CPU µs per request, req/s and errors per round
# for each, and the ratios to nginx.
#
#   benches/ab.sh OLD_BINARY NEW_BINARY
#   e.g. git worktree add /tmp/before main && (cd /tmp/before && cargo build --release) &&
#        cargo build --release && benches/ab.sh /tmp/before/target/release/handoff target/release/handoff
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${ROUNDS:-6}
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
setup_work
start_origin
A=$(free_port); B=$(free_port); C=$(free_port)
handoff_config a "$A" "$(handoff_log true a)"; handoff_config b "$B" "$(handoff_log true b)"
RUST_LOG=info "$OLD" run --config $work/a.toml 2>$work/a.err & PA=$!; pids+=("$PA")
RUST_LOG=info "$NEW" run --config $work/b.toml 2>$work/b.err & PB=$!; pids+=("$PB")
start_nginx_proxy $C; PN=$NGINX_PID
wait_port $A; wait_port $B; wait_port $C
NG="$PN $(pgrep -P "$PN" | tr '\n' ' ')"
HZ=$(getconf CLK_TCK)
cat > $work/r.lua <<'L'
done = function(s) io.write(string.format("REQS %d %d\n", s.requests, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status)) end
L
one() { local port=$1 t0 t1 out reqs errs; shift
  t0=$(ticks "$@")
  out=$(wrk -t1 -c64 -d5s -s $work/r.lua http://127.0.0.1:$port/ 2>&1 | awk '/^REQS/ {print $2, $3}')
  t1=$(ticks "$@"); read -r reqs errs <<<"$out"
  python3 -c "print(f'{($t1-$t0)/$HZ*1e6/$reqs:.1f} {$reqs/5:.0f} {$errs}')"
}
echo "round: old cpu-µs/req req/s errors | new cpu-µs/req req/s errors | nginx cpu-µs/req req/s errors"
sum_old=0 sum_new=0 sum_ng=0
for round in $(seq "$ROUNDS"); do
  o=$(one $A $PA); n=$(one $B $PB); g=$(one $C $NG)
  echo "round $round: old $o | new $n | nginx $g"
  sum_old=$(python3 -c "print($sum_old + ${o%% *})"); sum_new=$(python3 -c "print($sum_new + ${n%% *})")
  sum_ng=$(python3 -c "print($sum_ng + ${g%% *})")
done
python3 -c "print(f'CPU per request, mean of $ROUNDS rounds: old/nginx {$sum_old/$sum_ng:.2f}, new/nginx {$sum_new/$sum_ng:.2f}, new/old {$sum_new/$sum_old:.2f}')"
[ "$(wc -l < "$work/nginx-access.log")" -gt 0 ] || { echo "nginx wrote no access lines"; exit 1; }
