#!/usr/bin/env python3
"""Peak RSS of a handoff binary holding 1,000 client connections.

    python3 benches/rss.py target/release/handoff

Starts a 100-byte upstream (Python), the gateway (2 threads, access log off) in front of it,
opens 1,000 connections that each make one keep-alive request and stay open, then prints the
gateway's VmHWM and VmRSS from /proc. Loopback only; everything is stopped at the end.
"""
import socket, subprocess, sys, time, os, tempfile
bin_=sys.argv[1]
d=tempfile.mkdtemp()
def free():
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close(); return p
up=free(); gw=free()
# a tiny upstream: python http server returning 100 bytes, keep-alive
upsrv=subprocess.Popen([sys.executable,"-c",f"""
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
open(f"{d}/h.toml","w").write(f"""[server]
listen=["127.0.0.1:{gw}"]
threads=2
pid_file="{d}/pid"
upgrade_sock="{d}/sock"
[log]
access=false
[upstreams.u]
servers=["127.0.0.1:{up}"]
health_check={{type="none"}}
[[routes]]
path="/"
upstream="u"
""")
g=subprocess.Popen([bin_,"run","--config",f"{d}/h.toml"],stderr=subprocess.DEVNULL)
time.sleep(1.5)
def rss_kb():
    return int([l for l in open(f"/proc/{g.pid}/status").read().splitlines() if l.startswith("VmRSS")][0].split()[1])
idle=rss_kb()
socks=[]
for i in range(1000):
    s=socket.create_connection(("127.0.0.1",gw))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
for s in socks:
    data=b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n",1)[1])<100:
        data+=s.recv(4096)
time.sleep(0.5)
st=open(f"/proc/{g.pid}/status").read()
hwm=[l for l in st.splitlines() if l.startswith(("VmHWM","VmRSS"))]
print(os.path.basename(bin_), hwm, f"idle before the connections: {idle} kB;",
      f"per connection: {(rss_kb()-idle)/len(socks):.1f} kB")
for s in socks: s.close()
g.terminate(); upsrv.terminate(); g.wait()
