#!/usr/bin/env python3
"""What an upstream that writes past the end of its answers does to other people, and what
`connection_reuse` costs in upstream connections.

    python3 benches/stray_answers.py target/release/handoff [REQUESTS]

Starts a keep-alive upstream (Python) that answers `path=P` and, for a path with `/buggy`,
writes a second, stray answer right after the first (what a body on a HEAD or a
Content-Length counted in characters does). In front of it, side by side: the gateway with
`connection_reuse = "same_credentials"` (the default), the gateway with `"any"`, and nginx
(`keepalive 64`, one worker) when it is installed. Each gets two kept-alive clients at once:
Mallory, who asks for buggy pages, and Alice, with her own cookie, who asks for her own
pages and checks that every answer is hers. Prints, per proxy, how many of Alice's answers
were not hers (a stray answer, or someone else's page).

Then the cost: 8 kept-alive clients, each request as one of 200 people (their own cookie,
taken in turn, each client starting at a different person, as behind a load balancer), and
counts the upstream connections each gateway opened. Loopback only; everything is stopped at the end.
"""
import counting_upstream, gateway_conf
import os, shutil, socket, subprocess, sys, tempfile, threading, time

bin_ = sys.argv[1]
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
d = tempfile.mkdtemp()


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    return p


def answer(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def pages(path):
    """The page, and for a buggy one a stray answer right behind it (a write of its own)."""
    page = answer(b"path=" + path)
    return [page, answer(b"stray")] if b"/buggy" in path else [page]


up, accepted = counting_upstream.start(pages)


def wait_for(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


procs = []


def gateway(name, reuse):
    port = free_port()
    os.makedirs(f"{d}/{name}")
    gateway_conf.write(f"{d}/{name}/h.toml", f"{d}/{name}", port, up,
                       f'connection_reuse="{reuse}"')
    log = open(f"{d}/{name}/gw.log", "w")
    procs.append(subprocess.Popen([bin_, "run", "--config", f"{d}/{name}/h.toml"],
                                  stderr=log, stdout=log, env={**os.environ, "RUST_LOG": "warn"}))
    wait_for(port)
    return port


def nginx():
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not binary:
        return None
    port = free_port()
    os.makedirs(f"{d}/nginx")
    with open(f"{d}/nginx/nginx.conf", "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {d}/nginx/pid;
error_log {d}/nginx/error.log warn; events {{ worker_connections 1024; }}
http {{ access_log off; client_body_temp_path {d}/nginx; proxy_temp_path {d}/nginx;
  fastcgi_temp_path {d}/nginx; uwsgi_temp_path {d}/nginx; scgi_temp_path {d}/nginx;
  upstream u {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
    procs.append(subprocess.Popen([binary, "-c", f"{d}/nginx/nginx.conf"],
                                  stderr=subprocess.DEVNULL))
    wait_for(port)
    return port


class Client:
    def __init__(self, port):
        self.port = port; self.connect()

    def connect(self):
        self.c = socket.create_connection(("127.0.0.1", self.port)); self.c.settimeout(10)
        self.f = self.c.makefile("rb")

    def get(self, path, cookie):
        self.c.sendall(f"GET {path} HTTP/1.1\r\nHost: gw.test\r\nCookie: {cookie}\r\n\r\n".encode())
        if not self.f.readline().startswith(b"HTTP/1.1 200"):
            raise OSError("no answer")
        length = 0
        while True:
            h = self.f.readline()
            if h in (b"\r\n", b""):
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        return self.f.read(length)


def stray_answers(port):
    """How many of Alice's answers were not hers, while Mallory asks for buggy pages."""
    wrong = [0]

    def mallory():
        c = Client(port)
        for i in range(REQUESTS):
            try:
                c.get(f"/buggy{i}", "session=mallory")
            except OSError:
                c.connect()

    def alice():
        c = Client(port)
        for i in range(REQUESTS):
            try:
                if c.get(f"/alice{i}", "session=alice") != f"path=/alice{i}".encode():
                    wrong[0] += 1
            except OSError:
                wrong[0] += 1; c.connect()

    ts = [threading.Thread(target=mallory), threading.Thread(target=alice)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return wrong[0]


def connections_for_people(port, people=200, clients=8, each=1000):
    before = accepted[0]

    def client(k):
        c = Client(port)
        for i in range(each):
            c.get(f"/page{i}", f"session=person{(k * people // clients + i) % people}")

    ts = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    [t.start() for t in ts]; [t.join() for t in ts]
    return accepted[0] - before


try:
    proxies = [("handoff same_credentials", gateway("same", "same_credentials")),
               ("handoff any", gateway("any", "any"))]
    n = nginx()
    if n:
        proxies.append(("nginx keepalive 64", n))
    print(f"Alice's answers that were not hers, of {REQUESTS} (Mallory sends {REQUESTS} buggy requests beside her):")
    for name, port in proxies:
        print(f"  {name:26} {stray_answers(port)}", flush=True)
    print("upstream connections opened for 8 clients x 1,000 requests as 200 people:")
    for name, port in proxies[:2]:
        print(f"  {name:26} {connections_for_people(port)}", flush=True)
finally:
    for p in procs:
        p.terminate(); p.wait()
