#!/usr/bin/env bash
# Where a request's cost goes: instruction counts per request (callgrind; repeatable on a shared
# machine) and a CPU profile under load (perf). Writes target/profile/{callgrind,perf}.txt.
#
#   benches/profile.sh                    # pass-through
#   ROUTE=/jwt benches/profile.sh         # with a JWT session verified (remembered) per request
#   N=5000 benches/profile.sh
#   RUST_LOG=info benches/profile.sh      # with the access log on (default: warn, off)
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
work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx -p "$work" -c "$work/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ORIGIN=$(free_port); HANDOFF=$(free_port)
head -c 100 /dev/zero | tr '\0' 'x' > "$work/index.html"
cp "$work/index.html" "$work/jwt"
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 100000;
  location / { root $work; } } }
EOF
nginx -p "$work" -c "$work/nginx.conf"
head -c 32 /dev/urandom | base64 > "$work/secret.txt"
cat > "$work/handoff.toml" <<EOF
[server]
listen = ["127.0.0.1:$HANDOFF"]
threads = 1
pid_file = "$work/handoff.pid"
upgrade_sock = "$work/handoff.sock"
[session]
cookie = "intranet_session"
algorithms = ["HS256"]
secret = { file = "secret.txt" }
[upstreams.intranet]
servers = ["127.0.0.1:$ORIGIN"]
health_check = { type = "none" }
[[routes]]
path = "/"
upstream = "intranet"
[[routes]]
path = "/jwt"
upstream = "intranet"
require_session = true
identity_headers = true
EOF
TOKEN=$(hs256 "$work/secret.txt" '{"sub":"u-1","email":"ada@corp.example","name":"Ada Lovelace","groups":["eng"]}')
requests() { # N requests on one keep-alive connection
  python3 - "$HANDOFF" "$ROUTE" "$TOKEN" "$1" <<'EOF'
import http.client, sys
port, route, token, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", route, headers={"Cookie": "intranet_session=" + token})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
EOF
}

# 1. Instructions per request, under callgrind: counters zeroed after warm-up, dumped after N.
if [ -z "${SKIP_CALLGRIND:-}" ]; then
RUST_LOG=${RUST_LOG:-warn} valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" run \
  --config "$work/handoff.toml" 2>"$work/valgrind.err" &
pids+=($!)
VG=$!
wait_port "$HANDOFF"
requests 200
callgrind_control -z "$VG" >/dev/null
requests "$N"
callgrind_control -d "$VG" >/dev/null
sleep 1
kill "$VG" 2>/dev/null || true
wait "$VG" 2>/dev/null || true
dump=$(ls -t "$work"/cg.out* | grep -v '\.out$' | head -1 || true)
[ -n "$dump" ] || dump="$work/cg.out"
callgrind_annotate --threshold=100 "$dump" > "$out/callgrind.txt" 2>/dev/null || true
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$out/callgrind.txt")
echo "callgrind: ${total:-?} instructions for $N requests to $ROUTE → $(python3 -c "print(round(${total:-0}/$N))") per request"
echo "  top functions (self): $out/callgrind.txt"
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
