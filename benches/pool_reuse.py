#!/usr/bin/env python3
"""Pooled upstream connections lost on reuse, under load.

    python3 benches/pool_reuse.py target/release/handoff [ROUNDS]

Starts a 2-byte keep-alive upstream (Python) that counts its connections, the gateway in
front of it (2 threads, work stealing, access log off, warnings logged), and in each round
eight clients that each make 2,000 keep-alive requests side by side while four busy loops
keep both cores contended (so that the gateway's threads are preempted at odd moments).
Eight clients need at most eight upstream connections; every connection past that is one the
gateway dialled although a healthy one sat in its pool. Prints, per round, the upstream
connections made and the gateway's "failed to acquire reusable stream" lines (how Pingora
reports a pooled connection it could not take, cloudflare/pingora#998). Loopback only;
everything is stopped at the end.
"""
import counting_upstream, gateway_conf
import os, socket, subprocess, sys, tempfile, threading, time

bin_ = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
CLIENTS, REQUESTS, HOGS = 8, 2000, 4
d = tempfile.mkdtemp()

up, accepted = counting_upstream.start(lambda path: [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])

s = socket.socket(); s.bind(("127.0.0.1", 0)); gw = s.getsockname()[1]; s.close()
gateway_conf.write(f"{d}/h.toml", d, gw, up)
log = open(f"{d}/gw.log", "w")
g = subprocess.Popen([bin_, "run", "--config", f"{d}/h.toml"], stderr=log, stdout=log,
                     env={**os.environ, "RUST_LOG": "warn"})
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", gw)).close(); break
    except OSError:
        time.sleep(0.05)


def client():
    c = socket.create_connection(("127.0.0.1", gw)); f = c.makefile("rb")
    for _ in range(REQUESTS):
        c.sendall(b"GET / HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        assert f.readline().startswith(b"HTTP/1.1 200"), "an answer"
        length = 0
        while True:
            h = f.readline()
            if h == b"\r\n":
                break
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        f.read(length)
    c.close()


try:
    total_made = total_lost = 0
    for r in range(rounds):
        before = accepted[0]
        logged = open(f"{d}/gw.log").read().count("failed to acquire reusable stream")
        hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(HOGS)]
        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        [h.kill() for h in hogs]
        time.sleep(0.2)
        made = accepted[0] - before
        lost = open(f"{d}/gw.log").read().count("failed to acquire reusable stream") - logged
        total_made += made; total_lost += lost
        print(f"round {r + 1}: {CLIENTS * REQUESTS} requests, {made} upstream connections, "
              f"{lost} pooled connections lost", flush=True)
    print(f"total: {rounds * CLIENTS * REQUESTS} requests, {total_made} upstream connections, "
          f"{total_lost} pooled connections lost")
finally:
    g.terminate(); g.wait()
