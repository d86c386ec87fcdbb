#!/usr/bin/env bash
# The load harness: one run, side by side on loopback, one table.
#
#   benches/load.sh                # every scenario (about 6 minutes)
#   QUICK=1 benches/load.sh        # a smoke run: 2 s per scenario, small connection counts
#   DUR=10 LONG_DUR=60 benches/load.sh
#
# Starts: an origin nginx (the stand-in intranet: a 100-byte page, a userinfo answer, an auth
# endpoint, stub_status to count the connections opened to it), nginx as a reverse proxy
# (`proxy_pass`, and `proxy_pass` behind `auth_request`), the gateway (release build), and
# `examples/bench_upstreams` (the YourGPT stand-in, and a slow intranet answering after 100 ms).
# Drives each scenario with wrk on loopback and prints: req/s, p50/p99/p99.9 latency, errors
# (non-2xx/3xx and socket errors), proxy CPU µs per request ((utime+stime) ÷ requests), peak RSS
# of the proxy, and new upstream connections opened (with the reuse rate).
#
# Needs: nginx, wrk, python3, curl (apt-get install nginx wrk), and builds
# `cargo build --release --bin handoff --example bench_upstreams` first.
set -euo pipefail

QUICK=${QUICK:-}
DUR=${DUR:-10}
LONG_DUR=${LONG_DUR:-60}
CONNS=${CONNS:-64}
BIG=${BIG:-1000}
SLOW_CONNS=${SLOW_CONNS:-2000}
# One proxy thread: on a 2-core machine shared with wrk and the origin, a second Pingora thread
# costs ~30 µs of CPU per request in cross-thread wake-ups (BENCHMARKS.md, "Tuning").
HANDOFF_THREADS=${HANDOFF_THREADS:-1}
# nginx gets as many workers as Handoff has threads, and does the same work: a JSON access
# line per request written in batches, X-Forwarded-For/-Proto/-Host (lib.sh). Handoff runs
# with its defaults (access log on), both logs to files in the work folder.
NGINX_WORKERS=${NGINX_WORKERS:-$HANDOFF_THREADS}
# Idle upstream connections kept per process (server.upstream_keepalive_pool_size).
HANDOFF_POOL=${HANDOFF_POOL:-1024}
if [ -n "$QUICK" ]; then DUR=2; LONG_DUR=2; BIG=200; SLOW_CONNS=200; fi

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benches/lib.sh"
for tool in nginx wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx wrk python3 curl)"; exit 1; }
done
(cd "$root" && cargo build --release --quiet --bin handoff --example bench_upstreams)
bin="$root/target/release/handoff"
upstreams_bin="$root/target/release/examples/bench_upstreams"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
chmod 755 "$work"  # nginx workers run as nobody
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for conf in "$work"/nginx-*.conf; do
    [ -f "$conf" ] && nginx -p "$work" -c "$conf" -s stop 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

ORIGIN=$(free_port); NGINX=$(free_port); HANDOFF=$(free_port); YOURGPT=$(free_port); SLOW=$(free_port)

nginx_conf() { # name, workers, server block
  cat > "$work/nginx-$1.conf" <<EOF
worker_processes $2;
worker_rlimit_nofile 65536;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1.err warn;
events { worker_connections 16384; }
http {
  types { text/html html; }
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
  upstream slow { server 127.0.0.1:$SLOW; keepalive 128; }
  $3
}
EOF
  nginx -p "$work" -c "$work/nginx-$1.conf"
}
head -c 100 /dev/zero | tr '\0' 'x' > "$work/index.html"
for f in jwt opaque auth-page; do cp "$work/index.html" "$work/$f"; done
write_page "$work/page.html"
nginx_conf origin 2 "access_log off;
server { listen 127.0.0.1:$ORIGIN backlog=4096; keepalive_requests 100000;
  location / { root $work; }
  location = /status { stub_status; }
  location = /auth { return 204; }
  location = /userinfo { default_type application/json;
    return 200 '{\"sub\":\"u-1\",\"email\":\"ada@corp.example\",\"name\":\"Ada Lovelace\",\"groups\":[\"eng\"]}'; } }"
nginx_conf proxy "$NGINX_WORKERS" "$(nginx_json_log nginx-access.log)
server { listen 127.0.0.1:$NGINX backlog=4096; keepalive_requests 100000;
  location / { proxy_pass http://origin; $NGINX_PROXY }
  location /slow { proxy_pass http://slow; $NGINX_PROXY }
  location /auth-page { auth_request /_auth; proxy_pass http://origin; $NGINX_PROXY }
  location = /_auth { internal; proxy_pass http://origin/auth; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_pass_request_body off;
    proxy_set_header Content-Length \"\"; } }"

head -c 32 /dev/urandom | base64 > "$work/secret.txt"
head -c 32 /dev/urandom | base64 > "$work/yourgpt-secret.txt"
"$upstreams_bin" "127.0.0.1:$YOURGPT" "$work/yourgpt-secret.txt" "127.0.0.1:$SLOW" 100 \
  >"$work/upstreams.out" 2>&1 &
pids+=($!)
cat > "$work/handoff.toml" <<EOF
[server]
listen = ["127.0.0.1:$HANDOFF"]
threads = $HANDOFF_THREADS
upstream_keepalive_pool_size = $HANDOFF_POOL
pid_file = "$work/handoff.pid"
upgrade_sock = "$work/handoff.sock"
$(handoff_log true access)
[session]
cookie = "intranet_session"
algorithms = ["HS256"]
secret = { file = "secret.txt" }
[session.userinfo]
url = "http://127.0.0.1:$ORIGIN/userinfo"
cookies = ["sid"]
[upstreams.intranet]
servers = ["127.0.0.1:$ORIGIN"]
[upstreams.slow]
servers = ["127.0.0.1:$SLOW"]
read_timeout_ms = 5000
health_check = { type = "none" }
[apps.yourgpt]
kind = "yourgpt"
client_id = "test-sso-client"
secret = { file = "yourgpt-secret.txt" }
api_url = "http://127.0.0.1:$YOURGPT"
login_url = "https://chatbot.yourgpt.test"
emails_per_minute = 5
$(handoff_widget_app)
[[routes]]
path = "/"
upstream = "intranet"
[[routes]]
path = "/jwt"
upstream = "intranet"
require_session = true
identity_headers = true
[[routes]]
path = "/opaque"
upstream = "intranet"
require_session = true
identity_headers = true
[[routes]]
path = "/slow"
upstream = "slow"
[[routes]]
path = "/ai/yourgpt"
app = "yourgpt"
[[routes]]
path = "/ai/chat"
app = "chat"
EOF
RUST_LOG=info "$bin" run --config "$work/handoff.toml" 2>"$work/handoff.err" &
pids+=($!)
HANDOFF_PID=$!

TOKEN=$(hs256 "$work/secret.txt" \
  '{"sub":"u-1","email":"ada@corp.example","given_name":"Ada","family_name":"Lovelace","groups":["eng"]}')
# The stand-in's own cost: its verify endpoint with a token as Handoff mints it.
YG_TOKEN=$(hs256 "$work/yourgpt-secret.txt" \
  '{"email":"ada@corp.example","first_name":"Ada","last_name":"Lovelace"}')

for port in $ORIGIN $NGINX $HANDOFF $YOURGPT $SLOW; do wait_port "$port"; done
check() { # what, curl args…
  local what=$1; shift
  curl -fsS -o /dev/null "$@" || { echo "setup check failed: $what"; tail -5 "$work/handoff.err" "$work/handoff-access.log"; exit 1; }
}
check "pass-through" "http://127.0.0.1:$HANDOFF/"
check "JWT session" -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$HANDOFF/jwt"
check "userinfo session" -H "Cookie: sid=opaque-bench-session" "http://127.0.0.1:$HANDOFF/opaque"
check "nginx auth_request" "http://127.0.0.1:$NGINX/auth-page"
check "slow upstream" "http://127.0.0.1:$HANDOFF/slow"
page=$(curl -fsS -H "Cookie: intranet_session=$TOKEN" -H "Accept: text/html" "http://127.0.0.1:$HANDOFF/page.html")
[[ $page == *data-external-auth-code=* ]] || { echo "setup check failed: widget sign-in"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$HANDOFF/ai/yourgpt")" = 302 ] \
  || { echo "setup check failed: YourGPT handoff"; tail -5 "$work/handoff-access.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$HANDOFF/ai/chat")" = 302 ] \
  || { echo "setup check failed: TypingMind handoff"; exit 1; }

# wrk's summary as one line: requests, errors, non-2xx/3xx, p50/p99/p99.9 in µs.
cat > "$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("REPORT %d %d %d %.0f %.0f %.0f\n", summary.requests,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF
{ echo 'wrk.method = "POST"'; cat "$work/report.lua"; } > "$work/post.lua"

rss_kb() { local t=0 p; for p in "$@"; do
  [ -r "/proc/$p/status" ] && t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
nginx_pids() { local m; m=$(cat "$work/nginx-$1.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')"; }
accepts() { curl -s "http://127.0.0.1:$ORIGIN/status" | awk 'NR==3 {print $1}'; }
HZ=$(getconf CLK_TCK)
ms() { python3 -c "print(f'{$1/1000:.2f}ms')"; }

printf '%-26s %6s %9s %9s %9s %9s %7s %8s %8s %12s\n' \
  scenario conns req/s p50 p99 p99.9 errors "cpu µs" "rss MB" "new conns"
run() { # name, pids ("-" for none), conns, duration, url, [script], [header…]
  local name=$1 procs=$2 conns=$3 dur=$4 url=$5 script=${6:-$work/report.lua}
  shift 6 2>/dev/null || shift $#
  local hdr=() h
  for h in "$@"; do hdr+=(-H "$h"); done
  local before after acc0 acc1 peak=0 sampler out
  [ "$procs" = - ] && procs=""
  before=$(ticks $procs); acc0=$(accepts)
  ( while :; do r=$(rss_kb $procs); echo "$r"; sleep 0.2; done ) > "$work/rss" &
  sampler=$!
  out=$(wrk -t1 -c"$conns" -d"${dur}s" --timeout 10s -s "$script" "${hdr[@]}" "$url" 2>&1)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  after=$(ticks $procs); acc1=$(accepts)
  peak=$(sort -n "$work/rss" | tail -1)
  local report reqs errs non p50 p99 p999
  report=$(echo "$out" | awk '/^REPORT/ {print $2, $3, $4, $5, $6, $7}')
  read -r reqs errs non p50 p99 p999 <<<"$report"
  local secs rps cpu newc reuse
  rps=$(python3 -c "print(f'{$reqs/$dur:.0f}')")
  cpu=$( [ -n "$procs" ] && python3 -c "print(f'{($after-$before)/$HZ*1e6/max($reqs,1):.1f}')" || echo -)
  newc=$((acc1 - acc0 - 1))  # minus the status request itself
  reuse=$(python3 -c "print(f'{100*(1-$newc/max($reqs,1)):.2f}%')")
  printf '%-26s %6s %9s %9s %9s %9s %7s %8s %8s %12s\n' "$name" "$conns" "$rps" \
    "$(ms "$p50")" "$(ms "$p99")" "$(ms "$p999")" "$((errs + non))" "$cpu" \
    "$( [ -n "$procs" ] && python3 -c "print(f'{${peak:-0}/1024:.1f}')" || echo -)" "$newc ($reuse)"
}
NG=$(nginx_pids proxy)
H=$HANDOFF_PID
run "nginx proxy_pass"          "$NG" "$CONNS" "$DUR" "http://127.0.0.1:$NGINX/"
run "nginx auth_request"        "$NG" "$CONNS" "$DUR" "http://127.0.0.1:$NGINX/auth-page"
run "handoff pass-through"      "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/"
run "handoff + JWT session"     "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/jwt" "" \
  "Cookie: intranet_session=$TOKEN"
run "handoff + userinfo cached" "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/opaque" "" \
  "Cookie: sid=opaque-bench-session"
run "yourgpt stand-in alone"    -     "$CONNS" "$DUR" \
  "http://127.0.0.1:$YOURGPT/api/v1/verify/custom-sso?token=$YG_TOKEN&sso_client_id=test-sso-client" \
  "$work/post.lua"
run "handoff YourGPT handoff"   "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/ai/yourgpt" "" \
  "Cookie: intranet_session=$TOKEN"
run "handoff TypingMind handoff" "$H" "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/ai/chat" "" \
  "Cookie: intranet_session=$TOKEN"
# Added latency of a YourGPT handoff, one request at a time (no queueing): compare the p99s.
run "yourgpt stand-in alone"    -     1 "$DUR" \
  "http://127.0.0.1:$YOURGPT/api/v1/verify/custom-sso?token=$YG_TOKEN&sso_client_id=test-sso-client" \
  "$work/post.lua"
run "handoff YourGPT handoff"   "$H"  1 "$DUR" "http://127.0.0.1:$HANDOFF/ai/yourgpt" "" \
  "Cookie: intranet_session=$TOKEN"
# A 16 KB intranet page with the TypingMind widget tag: passed through, and signed in.
run "handoff 16 KB page"        "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/page.html" "" \
  "Cookie: intranet_session=$TOKEN"
run "handoff page + widget"     "$H"  "$CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/page.html" "" \
  "Cookie: intranet_session=$TOKEN" "Accept: text/html"
run "nginx proxy_pass"          "$NG" "$BIG" "$LONG_DUR" "http://127.0.0.1:$NGINX/"
run "handoff pass-through"      "$H"  "$BIG" "$LONG_DUR" "http://127.0.0.1:$HANDOFF/"
run "nginx slow upstream"       "$NG" "$SLOW_CONNS" "$DUR" "http://127.0.0.1:$NGINX/slow"
run "handoff slow upstream"     "$H"  "$SLOW_CONNS" "$DUR" "http://127.0.0.1:$HANDOFF/slow"
echo "(new conns: connections opened to the origin nginx during the run; the slow and handoff"
echo " scenarios go elsewhere, so 0 there says nothing. cpu/rss: the proxy's processes.)"
