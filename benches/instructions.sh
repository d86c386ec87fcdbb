#!/usr/bin/env bash
# Instructions per request, side by side, under callgrind (deterministic on a shared machine):
# nginx doing the same work, the smallest Pingora proxy (examples/minimal_proxy.rs), and
# Handoff — pass-through with the access log off and on, and a remembered JWT session.
#
#   benches/instructions.sh             # builds the release binaries first
#   N=5000 benches/instructions.sh
#   BIN=/tmp/handoff SKIP_BUILD=1 benches/instructions.sh
#
# Each proxy: one worker, a 100-byte page from an origin nginx, one keep-alive client
# connection, counters zeroed after 200 warm-up requests, then N requests (default 2000).
# "nginx + log" adds what Handoff does by default: a JSON access line per request (buffered)
# and X-Forwarded-For/-Proto/-Host. Needs nginx, valgrind, python3.
#
# Then HTML pages with widget sign-in (N_PAGE requests each, default 500): the 16 KB page of
# write_page through a gateway without widget apps (the pass-through reference), the same page
# with a widget app (stripped: no `Accept: text/html`; signed in: a navigation with the
# session), the same page with YourGPT's chatbot tag instead and a YourGPT app signing it in,
# and the 100-byte page (served as text/html) with a widget app.
set -euo pipefail
[ -z "${TRACE:-}" ] || set -x

N=${N:-2000}
N_PAGE=${N_PAGE:-500}
# Handoff logs at info: its access lines (when [log] access is on) are written.
export RUST_LOG=info
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/benches/lib.sh"
for tool in nginx python3 valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "needs $tool"; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  (cd "$root" && cargo build --release --quiet --bin handoff --example minimal_proxy)
fi
bin=${BIN:-"$root/target/release/handoff"}
minimal=${MINIMAL:-"$root/target/release/examples/minimal_proxy"}
nginx_bin=$(command -v nginx)
setup_work
start_origin
# nginx as the proxy: plain, and with the work Handoff does by default.
nginx_conf() { # NAME PORT EXTRA_HTTP LOCATION_DIRECTIVES
  cat > "$work/$1.conf" <<EOF
worker_processes 1; pid $work/$1.pid; error_log $work/$1.err warn;
events { worker_connections 1024; }
http { ${3:-access_log off;}
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 16; }
  server { listen 127.0.0.1:$2; keepalive_requests 100000;
    location / { proxy_pass http://origin; $4 } } }
EOF
}

declare -A result
measure() { # NAME PORT ROUTE COMMAND...   ($COUNT requests, default $N)
  local name=$1 port=$2 route=$3 n=${COUNT:-$N}; shift 3
  callgrind_run "$name" "$port" "$route" "$n" "$@"
  result[$name]=$(( CALLGRIND_TOTAL / n ))
  printf "%-34s %9d instructions/request\n" "$name" "${result[$name]}"
}

P=$(free_port); nginx_conf nginx "$P" "" 'proxy_http_version 1.1; proxy_set_header Connection "";'
measure "nginx proxy_pass" "$P" / "$nginx_bin" -p "$work" -c "$work/nginx.conf" -g "daemon off; master_process off;"
P=$(free_port); nginx_conf nginxlog "$P" "$(nginx_json_log access.log)" "$NGINX_PROXY"
measure "nginx + JSON log + X-Forwarded" "$P" / "$nginx_bin" -p "$work" -c "$work/nginxlog.conf" -g "daemon off; master_process off;"
# The comparison is only fair if nginx really logged (an `access_log off` at the same level
# silently wins).
[ "$(wc -l < "$work/access.log")" -ge "$N" ] || { echo "nginx wrote no access lines"; exit 1; }
P=$(free_port)
measure "minimal Pingora" "$P" / "$minimal" "127.0.0.1:$P" "127.0.0.1:$ORIGIN"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log false "$P")"
TOKEN=$(session_token)
measure "Handoff, access log off" "$P" / "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P")"
measure "Handoff (default: log on)" "$P" / "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P")"
measure "Handoff, remembered JWT, log on" "$P" /jwt "$bin" run --config "$work/handoff-$P.toml"

echo
export COUNT=$N_PAGE
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P")"
measure "16 KB page, no widget app" "$P" /page.html "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P"; handoff_widget_app)"
measure "16 KB page, widget app, stripped" "$P" /page.html "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P"; handoff_widget_app)"
# Every answer must carry a code in its widget tag (the sign-in really happened).
ACCEPT=text/html EXPECT=data-external-auth-code= \
  measure "16 KB page, widget signed in" "$P" /page.html "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P"; handoff_yourgpt_widget_app)"
# The YourGPT chatbot's page: every answer must carry the contact script before the tag.
ACCEPT=text/html EXPECT=yourgpt-contact \
  measure "16 KB page, YourGPT chatbot signed in" "$P" /page-yourgpt.html "$bin" run --config "$work/handoff-$P.toml"
P=$(free_port); handoff_config "handoff-$P" "$P" "$(handoff_log true "$P"; handoff_widget_app)"
measure "100 B HTML page, widget app" "$P" / "$bin" run --config "$work/handoff-$P.toml"
unset COUNT

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo
echo "Handoff (log on) / nginx + log:    $(ratio "${result["Handoff (default: log on)"]}" "${result["nginx + JSON log + X-Forwarded"]}")"
echo "Handoff (log off) / nginx:         $(ratio "${result["Handoff, access log off"]}" "${result["nginx proxy_pass"]}")"
echo "Handoff (log off) / minimal Pingora: $(ratio "${result["Handoff, access log off"]}" "${result["minimal Pingora"]}")"
echo "minimal Pingora / nginx:           $(ratio "${result["minimal Pingora"]}" "${result["nginx proxy_pass"]}")"
echo "widget signed in / 16 KB page without widget app: $(ratio "${result["16 KB page, widget signed in"]}" "${result["16 KB page, no widget app"]}")"
echo "widget stripped / 16 KB page without widget app:  $(ratio "${result["16 KB page, widget app, stripped"]}" "${result["16 KB page, no widget app"]}")"
echo "YourGPT chatbot signed in / TypingMind widget signed in: $(ratio "${result["16 KB page, YourGPT chatbot signed in"]}" "${result["16 KB page, widget signed in"]}")"
