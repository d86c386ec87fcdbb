#!/usr/bin/env bash
# Baseline load comparison, one run, side by side on loopback:
#   origin : nginx serving a 100-byte page (the stand-in intranet)
#   nginx  : nginx `proxy_pass` to the origin (keep-alive upstream)
#   handoff: Handoff pass-through (no session check)
#   handoff+jwt: Handoff verifying an HS256 session cookie and injecting identity headers
#   handoff+userinfo: the same with an opaque session cookie, recognised through the userinfo
#   endpoint (served by the origin nginx) — cached, so one call for the whole run
#   page / page+widget: a 16 KB HTML page with the TypingMind widget tag through Handoff, as a
#   plain pass-through and with widget sign-in (session check, fresh code, lol_html rewrite)
# Each proxy is driven by wrk (1 thread, $CONNS connections, $DUR seconds). Reported: req/s,
# latency, errors, and CPU time of the proxy process(es) per request ((utime+stime) / requests).
#
# Needs: nginx, wrk, python3, and a release build (`cargo build --release`).
#     benches/baseline.sh            # DUR=10 CONNS=64 by default
set -euo pipefail

DUR=${DUR:-10}
CONNS=${CONNS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/target/release/handoff"
for tool in nginx wrk python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx wrk)"; exit 1; }
done
[ -x "$bin" ] || { echo "needs a release build: cargo build --release"; exit 1; }

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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ORIGIN=$(free_port); NGINX=$(free_port); HANDOFF=$(free_port)

nginx_conf() { # name, server block
  cat > "$work/nginx-$1.conf" <<EOF
worker_processes 2;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  types { text/html html; }
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
  $2
}
EOF
  nginx -p "$work" -c "$work/nginx-$1.conf"
}
head -c 100 /dev/zero | tr '\0' 'x' > "$work/index.html"
python3 - "$work/page.html" <<'EOF'
import sys
head = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Intranet</title>'
        '<script defer src="https://chat.example.test/widget.js"></script></head><body>')
row = '<div class="item"><h2>News</h2><p>Lorem <b>ipsum</b> <a href="/x?y=1&amp;z=2">link</a>.</p></div>\n'
html = head
while len(html) < 16384:
    html += row
open(sys.argv[1], "w").write(html + "</body></html>")
EOF
nginx_conf origin "server { listen 127.0.0.1:$ORIGIN; location / { root $work; } \
  location = /userinfo { default_type application/json; \
    return 200 '{\"sub\":\"u-1\",\"email\":\"ada@corp.example\",\"name\":\"Ada Lovelace\",\"groups\":[\"eng\"]}'; } }"
nginx_conf proxy "server { listen 127.0.0.1:$NGINX; location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

head -c 32 /dev/urandom | base64 > "$work/secret.txt"
head -c 32 /dev/urandom | base64 > "$work/tm-secret.txt"
cat > "$work/handoff.toml" <<EOF
[server]
listen = ["127.0.0.1:$HANDOFF"]
threads = 2
pid_file = "$work/handoff.pid"
upgrade_sock = "$work/handoff.sock"
[session]
cookie = "intranet_session"
algorithms = ["HS256"]
secret = { file = "secret.txt" }
[session.userinfo]
url = "http://127.0.0.1:$ORIGIN/userinfo"
cookies = ["sid"]
[upstreams.intranet]
servers = ["127.0.0.1:$ORIGIN"]
[apps.chat]
kind = "typingmind"
instance_url = "https://chat.example.test"
secret = { file = "tm-secret.txt" }
widget = true
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
EOF
cp "$work/index.html" "$work/jwt"
cp "$work/index.html" "$work/opaque"
RUST_LOG=warn "$bin" run --config "$work/handoff.toml" 2>"$work/handoff.err" &
pids+=($!)
HANDOFF_PID=$!

TOKEN=$(python3 - "$work/secret.txt" <<'EOF'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read().rstrip(b"\n")
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": "u-1", "email": "ada@corp.example", "name": "Ada Lovelace",
                       "groups": ["eng"], "exp": int(time.time()) + 3600}).encode())
sig = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
EOF
)

for port in $ORIGIN $NGINX $HANDOFF; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
curl -fsS -o /dev/null "http://127.0.0.1:$HANDOFF/" || { echo "handoff does not proxy"; cat "$work/handoff.err"; exit 1; }
curl -fsS -o /dev/null -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$HANDOFF/jwt" \
  || { echo "handoff refuses the bench token"; exit 1; }
curl -fsS -o /dev/null -H "Cookie: sid=opaque-bench-session" "http://127.0.0.1:$HANDOFF/opaque" \
  || { echo "handoff does not recognise the opaque cookie"; cat "$work/handoff.err"; exit 1; }
curl -fsS -H "Cookie: intranet_session=$TOKEN" -H "Accept: text/html" "http://127.0.0.1:$HANDOFF/page.html" \
  | grep -q 'data-external-auth-code=' || { echo "handoff does not sign the widget in"; exit 1; }

ticks() { # total utime+stime (clock ticks) of the given pids
  local t=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $t
}
nginx_pids() { # the proxy's master and its workers
  local master
  master=$(cat "$work/nginx-proxy.pid")
  echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
}
HZ=$(getconf CLK_TCK)

printf '%-16s %10s %9s %9s %9s %7s %12s\n' scenario req/s p50 p99 max errors "cpu µs/req"
run() { # name, pids, url, [header]
  local name=$1 procs=$2 url=$3 header=${4:-}
  local before after out reqs
  before=$(ticks $procs)
  if [ -n "${WRK_ACCEPT_HTML:-}" ]; then
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "$header" -H "Accept: text/html" "$url")
  elif [ -n "$header" ]; then
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency -H "$header" "$url")
  else
    out=$(wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "$url")
  fi
  after=$(ticks $procs)
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local rps p50 p99 maxl errs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  maxl=$(echo "$out" | awk '/Latency/ && !/Distribution/ {print $4; exit}')
  errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {s=s $0 " "} END {print (s=="" ? 0 : "yes")}')
  local cpu
  cpu=$(python3 -c "print(f'{($after-$before)/$HZ*1e6/max($reqs,1):.1f}')")
  printf '%-16s %10s %9s %9s %9s %7s %12s\n' "$name" "$rps" "$p50" "$p99" "$maxl" "$errs" "$cpu"
}
run nginx "$(nginx_pids)" "http://127.0.0.1:$NGINX/"
run handoff "$HANDOFF_PID" "http://127.0.0.1:$HANDOFF/"
run handoff+jwt "$HANDOFF_PID" "http://127.0.0.1:$HANDOFF/jwt" "Cookie: intranet_session=$TOKEN"
run handoff+userinfo "$HANDOFF_PID" "http://127.0.0.1:$HANDOFF/opaque" "Cookie: sid=opaque-bench-session"
# wrk sends one -H; the page scenarios differ only in Accept, which decides widget sign-in.
run page "$HANDOFF_PID" "http://127.0.0.1:$HANDOFF/page.html" "Cookie: intranet_session=$TOKEN"
WRK_ACCEPT_HTML=1 run page+widget "$HANDOFF_PID" "http://127.0.0.1:$HANDOFF/page.html" "Cookie: intranet_session=$TOKEN"
