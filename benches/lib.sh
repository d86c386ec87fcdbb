# Shared by benches/load.sh and benches/profile.sh (sourced, not run).

# A free TCP port on loopback.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits (up to 30 s) until something listens on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1"; return 1
}

# An HS256 JWT: secret file ($1, trailing newline dropped), claims JSON ($2); iat and a one-hour
# exp are added.
hs256() {
  python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1], "rb").read().rstrip(b"\n")
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
claims = json.loads(sys.argv[2]); claims["iat"] = int(time.time()); claims["exp"] = int(time.time()) + 3600
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps(claims).encode())
print((head + b"." + body + b"." + b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())).decode())
PY
}

# CPU clock ticks (utime + stime) used so far by the processes $@ (÷ `getconf CLK_TCK` = s).
ticks() { local t=0 p; for p in "$@"; do
  [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

# A work folder ($work) removed at exit, with every process in $pids killed and the origin
# nginx (if started) stopped.
setup_work() {
  work=$(mktemp -d)
  chmod 755 "$work"
  pids=()
  trap cleanup_work EXIT
}
cleanup_work() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ ! -f "$work/origin.conf" ] || nginx -p "$work" -c "$work/origin.conf" -s stop 2>/dev/null || true
  rm -rf "$work"
}

# A 16 KB intranet page at $1: the TypingMind widget tag in its head (with $2 = yourgpt, the
# YourGPT chatbot's tag instead), then rows of ordinary markup (about 1,100 tags in all).
write_page() {
  python3 - "$1" "${2:-typingmind}" <<'EOF'
import sys
tag = {'typingmind': '<script defer src="https://chat.example.test/widget.js"></script>',
       'yourgpt': '<script src="https://widget.yourgpt.ai/script.js" id="yourgpt-chatbot" data-widget="bench"></script>'}[sys.argv[2]]
head = ('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Intranet</title>'
        + tag + '</head><body>')
row = '<div class="item"><h2>News</h2><p>Lorem <b>ipsum</b> <a href="/x?y=1&amp;z=2">link</a>.</p></div>\n'
html = head
while len(html) < 16384:
    html += row
open(sys.argv[1], "w").write(html + "</body></html>")
EOF
}

# The origin: nginx serving a 100-byte page at / and /jwt, and write_page's page at /page.html,
# on $ORIGIN (keep-alive, no log).
start_origin() {
  ORIGIN=$(free_port)
  head -c 100 /dev/zero | tr '\0' 'x' > "$work/index.html"
  cp "$work/index.html" "$work/jwt"
  write_page "$work/page.html"
  write_page "$work/page-yourgpt.html" yourgpt
  cat > "$work/origin.conf" <<EOF
worker_processes 1; pid $work/origin.pid; error_log $work/origin.err warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; keepalive_requests 100000;
  location / { root $work; } } }
EOF
  nginx -p "$work" -c "$work/origin.conf"
}

# nginx doing the work Handoff does by default, for side-by-side runs: a JSON line per request
# written in batches (nginx's buffer/flush, as Handoff's log writer) to $work/$1, and
# X-Forwarded-For/-Proto/-Host sent upstream. `nginx_json_log FILE` goes in `http { }`;
# $NGINX_PROXY in each proxying location (proxy_set_header is not inherited by a location that
# sets its own).
nginx_json_log() {
  printf '%s' 'log_format json escape=json '"'"'{"time":"$time_iso8601","method":"$request_method","path":"$uri","status":$status,"upstream":"$upstream_addr","duration_ms":$request_time}'"'"'; access_log '"$work/$1"' json buffer=64k flush=200ms;'
}
NGINX_PROXY='proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For $remote_addr; proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host;'

# nginx doing that work as a proxy in front of the origin, one worker, on 127.0.0.1:$1, in the
# foreground (its pid in $NGINX_PID and $pids; its access log $work/nginx-access.log).
start_nginx_proxy() {
  cat > "$work/nginx.conf" <<EOF
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err warn;
events { worker_connections 1024; }
http { $(nginx_json_log nginx-access.log)
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
  server { listen 127.0.0.1:$1; keepalive_requests 100000;
    location / { proxy_pass http://origin; $NGINX_PROXY } } }
EOF
  nginx -p "$work" -c "$work/nginx.conf" -g "daemon off;" & NGINX_PID=$!; pids+=("$NGINX_PID")
}

# The [log] table of a gateway config: the access log on (true) or off, to $work/handoff-$2.log.
handoff_log() { printf '[log]\naccess = %s\nfile = "%s/handoff-%s.log"\n' "$1" "$work" "$2"; }

# A gateway config at $work/$1.toml: one thread listening on $2, in front of the origin, with
# an HS256 session (secret.txt) required on /jwt. $3: extra lines after [server]'s own.
handoff_config() {
  [ -f "$work/secret.txt" ] || head -c 32 /dev/urandom | base64 > "$work/secret.txt"
  cat > "$work/$1.toml" <<EOF
[server]
listen = ["127.0.0.1:$2"]
threads = 1
pid_file = "$work/$1.pid"
upgrade_sock = "$work/$1.sock"
${3:-}
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
}

# A TypingMind app whose widget tags get signed in (chat.example.test, as in write_page's
# page): goes in handoff_config's extra lines.
handoff_widget_app() {
  [ -f "$work/tm-secret.txt" ] || head -c 32 /dev/urandom | base64 > "$work/tm-secret.txt"
  printf '[apps.chat]\nkind = "typingmind"\ninstance_url = "https://chat.example.test"\nsecret = { file = "tm-secret.txt" }\nwidget = true\n'
}

# A YourGPT app whose chatbot widget (widget id "bench", write_page's yourgpt page) gets the
# person's contact script: goes in handoff_config's extra lines.
handoff_yourgpt_widget_app() {
  [ -f "$work/yg-secret.txt" ] || head -c 32 /dev/urandom | base64 > "$work/yg-secret.txt"
  printf '[apps.gpt]\nkind = "yourgpt"\nclient_id = "bench"\nsecret = { file = "yg-secret.txt" }\n[apps.gpt.widget]\nsecret = { file = "yg-secret.txt" }\nwidget_ids = ["bench"]\n'
}

# A session cookie's token for the gateway configs above (after handoff_config).
session_token() {
  hs256 "$work/secret.txt" '{"sub":"u-1","email":"ada@corp.example","name":"Ada Lovelace","groups":["eng"]}'
}

# N requests to ROUTE on one keep-alive connection to 127.0.0.1:PORT, each with the session
# cookie $TOKEN (and `Accept: $ACCEPT` when set); every answer must be a 200 (and hold $EXPECT
# when set).   requests PORT ROUTE N
requests() {
  python3 - "$1" "$2" "${TOKEN:-}" "$3" "${ACCEPT:-}" "${EXPECT:-}" <<'PY'
import http.client, sys
port, route, token, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
expect = sys.argv[6].encode()
headers = {"Cookie": "intranet_session=" + token}
if sys.argv[5]:
    headers["Accept"] = sys.argv[5]
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    c.request("GET", route, headers=headers)
    r = c.getresponse(); body = r.read()
    assert r.status == 200, r.status
    assert expect in body, f"answer without {expect!r}"
PY
}

# Runs COMMAND… under callgrind: 200 warm-up requests to ROUTE on 127.0.0.1:PORT, then N
# counted ones (counters zeroed in between), then a dump and a fast stop (SIGINT: Pingora waits
# out a grace period on TERM). Sets $CALLGRIND_DUMP (the dump's path) and $CALLGRIND_TOTAL
# (instructions of the N requests) and $CALLGRIND_ALLOCS (calls to Rust's allocator in them:
# `__rust_alloc`, `__rust_alloc_zeroed`, `__rust_realloc`).   callgrind_run NAME PORT ROUTE N COMMAND...
callgrind_run() {
  local name=$1 port=$2 route=$3 n=$4; shift 4
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.cg" "$@" 2>"$work/$name.vg" &
  local vg=$!; pids+=("$vg")
  wait_port "$port"
  requests "$port" "$route" 200
  callgrind_control -z "$vg" >/dev/null 2>&1
  requests "$port" "$route" "$n"
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill -INT "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  CALLGRIND_DUMP=$(ls -t "$work/$name.cg"* | grep -v '\.cg$' | head -1 || true)
  [ -n "$CALLGRIND_DUMP" ] || CALLGRIND_DUMP="$work/$name.cg"
  CALLGRIND_TOTAL=$(callgrind_annotate "$CALLGRIND_DUMP" 2>/dev/null \
    | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  CALLGRIND_ALLOCS=$(callgrind_calls "$CALLGRIND_DUMP" '__rust_(alloc|alloc_zeroed|realloc)$')
}

# Calls to the functions whose name matches REGEX (Python syntax) in a callgrind dump, summed
# over every caller (the `calls=` lines under a matching `cfn=`).   callgrind_calls DUMP REGEX
callgrind_calls() {
  python3 - "$1" "$2" <<'PY'
import re, sys
pattern, names, target, total = re.compile(sys.argv[2]), {}, False, 0
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(("fn=", "cfn=")):
        key, _, rest = line.rstrip("\n").partition("=")
        ident, name = re.match(r"(?:\((\d+)\))?\s*(.*)", rest).groups()
        if name:
            names[ident] = name
        target = key == "cfn" and bool(pattern.search(names.get(ident, name)))
    elif target and line.startswith("calls="):
        total += int(line[len("calls="):].split()[0])
print(total)
PY
}
