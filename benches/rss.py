#!/usr/bin/env python3
"""Peak RSS of a proxy holding 1,000 client connections.

    python3 benches/rss.py target/release/handoff
    python3 benches/rss.py nginx          # nginx as the proxy, for comparison

Starts a 100-byte upstream (Python), the proxy in front of it — the gateway (2 threads, access
log off) or nginx (2 workers, upstream keep-alive, no log) —, opens 1,000 connections that
each make one keep-alive request and stay open, then prints the proxy's VmHWM and VmRSS from
/proc (nginx: master and workers summed), its RSS before the connections and the growth per
connection. Loopback only; everything is stopped at the end.
"""
import gateway_conf
import os, shutil, socket, subprocess, sys, tempfile, time

bin_ = sys.argv[1]
nginx = os.path.basename(bin_) == "nginx"
d = tempfile.mkdtemp()
os.chmod(d, 0o755)


def free():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


up = free(); gw = free()
# a tiny upstream: python http server returning 100 bytes, keep-alive
upsrv = subprocess.Popen([sys.executable, "-c", f"""
import http.server,socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version='HTTP/1.1'
    def do_GET(self):
        b=b'x'*100
        self.send_response(200);self.send_header('Content-Length',str(len(b)));self.end_headers();self.wfile.write(b)
    def log_message(self,*a):pass
class S(socketserver.ThreadingMixIn,http.server.HTTPServer):daemon_threads=True
S(('127.0.0.1',{up}),H).serve_forever()
"""])
if nginx:
    open(f"{d}/n.conf", "w").write(f"""worker_processes 2; pid {d}/n.pid; error_log {d}/n.err warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{ access_log off;
  upstream u {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{ listen 127.0.0.1:{gw}; keepalive_timeout 300s; keepalive_requests 100000;
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    g = subprocess.Popen([shutil.which("nginx") or bin_, "-p", d, "-c", f"{d}/n.conf", "-g", "daemon off;"],
                         stderr=subprocess.DEVNULL)
else:
    gateway_conf.write(f"{d}/h.toml", d, gw, up)
    g = subprocess.Popen([bin_, "run", "--config", f"{d}/h.toml"], stderr=subprocess.DEVNULL)
time.sleep(1.5)


def procs():
    kids = subprocess.run(["pgrep", "-P", str(g.pid)], capture_output=True, text=True).stdout.split()
    return [g.pid] + [int(k) for k in kids]


def status_kb(field):
    total = 0
    for p in procs():
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith(field):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


idle = status_kb("VmRSS")
socks = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", gw))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
for s in socks:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 100:
        data += s.recv(4096)
time.sleep(0.5)
now = status_kb("VmRSS")
print(os.path.basename(bin_), [f"VmHWM:\t{status_kb('VmHWM'):>8} kB", f"VmRSS:\t{now:>8} kB"],
      f"idle before the connections: {idle} kB;",
      f"per connection: {(now - idle) / len(socks):.1f} kB")
for s in socks: s.close()
g.terminate(); upsrv.terminate(); g.wait()
shutil.rmtree(d, ignore_errors=True)
