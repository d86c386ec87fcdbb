#!/usr/bin/env bash
# System calls per request of a handoff binary under load, with the access log on:
#
#   benches/syscalls.sh target/release/handoff
#
# nginx serves a 100-byte page; the gateway (one thread) proxies it; wrk -t1 -c8 runs 3 s while
# `strace -f -c` counts the gateway's calls; prints the busiest calls ÷ requests served.
# Needs nginx, wrk, strace.
bin=$1; d=$(mktemp -d); up=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'); gw=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p $d/www; head -c 100 /dev/zero | tr '\0' x > $d/www/index.html
cat > $d/nginx.conf <<EOT
worker_processes 1; daemon off; pid $d/nginx.pid; error_log $d/err.log warn;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$up; keepalive_requests 100000; location / { root $d/www; } } }
EOT
/usr/sbin/nginx -p $d -c $d/nginx.conf & ngx=$!
cat > $d/h.toml <<EOT
[server]
listen=["127.0.0.1:$gw"]
threads=1
pid_file="$d/pid"
upgrade_sock="$d/sock"
[upstreams.u]
servers=["127.0.0.1:$up"]
health_check={type="none"}
[[routes]]
path="/"
upstream="u"
EOT
RUST_LOG=info $bin run --config $d/h.toml 2>/dev/null & g=$!
sleep 1
wrk -t1 -c8 -d2s http://127.0.0.1:$gw/ >/dev/null
strace -f -c -p $g -o $d/strace.txt & st=$!
sleep 0.5
out=$(wrk -t1 -c8 -d3s http://127.0.0.1:$gw/)
sleep 0.3; kill -INT $st; sleep 0.5
reqs=$(echo "$out" | awk '/requests in/ {print $1}')
echo "$(basename $bin): $reqs requests"
awk -v n=$reqs 'NR>2 && $NF ~ /^[a-z_0-9]+$/ && $4+0>0 {printf "  %-14s %8.2f per request\n", $NF, $4/n}' $d/strace.txt | sort -k2 -nr | head -8
kill $g $ngx 2>/dev/null; wait 2>/dev/null
