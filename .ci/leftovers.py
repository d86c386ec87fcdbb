#!/usr/bin/env python3
"""Runs a command (the test suite) and fails if anything it started is still running after it.

    python3 .ci/leftovers.py cargo test

This process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER): a process the
command starts and then loses — an nginx worker whose master was SIGKILLed, a daemon that
forked away, a browser whose driver died — is re-parented here instead of to init. When the
command ends, every process still below this one was started by it and outlived it: each is
printed (pid and command line), killed, and the exit code is 1 (or the command's own, if that
failed). `--self-test` shows that the check catches an orphan and passes a clean command.
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        sys.exit(f"leftovers: prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(err)}")


def processes():
    """{pid: (ppid, state, command line)} of every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0], cmdline or stat[: stat.rfind(")") + 1])
    return table


def reap():
    """Collects every exited child (orphans re-parented here end as our zombies)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def descendants(me):
    table = processes()
    children = {}
    for pid, (ppid, state, cmd) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(me, []))
    while todo:
        pid = todo.pop()
        ppid, state, cmd = table[pid]
        if state != "Z":
            found.append((pid, cmd))
        todo.extend(children.get(pid, []))
    return sorted(found)


def run(argv):
    become_subreaper()
    code = subprocess.call(argv)
    # What stops on its own (a server a test signalled just before the end) gets a moment.
    deadline = time.monotonic() + 2.0
    while True:
        reap()
        left = descendants(os.getpid())
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if not left:
        return code
    print(f"leftovers: {len(left)} process(es) started by `{' '.join(argv)}` still running after it:",
          file=sys.stderr)
    for pid, cmd in left:
        print(f"  pid {pid}: {cmd}", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.2)
    reap()
    return code or 1


def self_test():
    # An orphan (the shell exits, its background sleep lives on) must fail the check...
    leaky = subprocess.run([sys.executable, __file__, "sh", "-c", "sleep 30 & exit 0"],
                           stderr=subprocess.PIPE, text=True)
    assert leaky.returncode == 1 and "sleep 30" in leaky.stderr, leaky
    # ...and a command that cleans up after itself must pass.
    clean = subprocess.run([sys.executable, __file__, "sh", "-c", "sleep 30 & kill $!; wait"],
                           stderr=subprocess.PIPE, text=True)
    assert clean.returncode == 0, clean
    print("leftovers: self-test passed (an orphan fails the check, a clean command passes)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) < 2:
        sys.exit("usage: leftovers.py COMMAND [ARGS...] | --self-test")
    sys.exit(run(sys.argv[1:]))
