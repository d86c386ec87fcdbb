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
work=$(mktemp -d); chmod 755 $work
ORIGIN=$(free_port); A=$(free_port); B=$(free_port)
head -c 100 /dev/zero | tr '\0' 'x' > $work/index.html
cat > $work/nginx.conf <<NG
worker_processes 1; daemon on; pid $work/nginx.pid; error_log $work/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 100000; location / { root $work; } } }
NG
nginx -p $work -c $work/nginx.conf
conf() { cat > $work/$1.toml <<T
[server]
listen = ["127.0.0.1:$2"]
threads = 1
pid_file = "$work/$1.pid"
upgrade_sock = "$work/$1.sock"
[upstreams.intranet]
servers = ["127.0.0.1:$ORIGIN"]
health_check = { type = "none" }
[[routes]]
path = "/"
upstream = "intranet"
T
}
conf a $A; conf b $B
RUST_LOG=warn "$OLD" run --config $work/a.toml 2>$work/a.err & PA=$!
RUST_LOG=warn "$NEW" run --config $work/b.toml 2>$work/b.err & PB=$!
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
kill $PA $PB; nginx -p $work -c $work/nginx.conf -s stop 2>/dev/null; rm -rf $work
