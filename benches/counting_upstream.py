"""A keep-alive HTTP/1.1 upstream for the Python benches (pool_reuse.py, stray_answers.py): it
answers each request with the bytes `answer(path)` returns (a list: one write each) and counts
the connections it accepts. Request bodies are not read (the benches send none)."""
import socket, threading


def start(answer):
    """Listens on a free loopback port; returns (port, accepted), where accepted[0] is the
    number of connections accepted so far."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    accepted = [0]

    def serve(c):
        try:
            f = c.makefile("rb")
            while True:
                line = f.readline()
                if not line:
                    return
                while True:
                    h = f.readline()
                    if not h:
                        return
                    if h == b"\r\n":
                        break
                for chunk in answer(line.split(b" ")[1]):
                    c.sendall(chunk)
        except OSError:
            pass  # the proxy closed a connection it would not reuse

    def accept():
        while True:
            c, _ = listener.accept()
            accepted[0] += 1
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], accepted
