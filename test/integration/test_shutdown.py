"""Stop callhook with signals while webhook requests wait for Redis.

CLIENT PAUSE WRITE keeps the apply script waiting inside Redis, so requests
stay in flight for as long as the test needs, without timing assumptions.
"""

import json
import re
import signal
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stack, run_in_thread, run_test, wait_until  # noqa: E402

QUEUED_RE = re.compile(r" debug event rid=\d+ call[= ]")
COMPLETE_RE = re.compile(r"^\S+ info +shutdown complete")
# The spool is off and Redis replies are awaited without limit, so a held
# request ends only by Redis replying or by the shutdown giving up.
BASE_ARGS = ["--log-level", "debug", "--spool-dir", "", "--redis-timeout",
             "0"]


def post_event(callhook, uuid, status):
    client = callhook.public()
    try:
        return client.post("/call_events",
                           json.dumps({"uuid": uuid, "status": status}))
    finally:
        client.close()


def hold_requests(stack, count, uuid):
    """Pause Redis writes and send count events that then wait in flight."""
    callhook = stack.callhook
    queued = sum(1 for line in callhook.log_lines() if QUEUED_RE.search(line))
    stack.db.command("CLIENT", "PAUSE", "600000", "WRITE")
    statuses = ["started", "ringing", "answered", "disconnected", "completed"]
    handles = [run_in_thread(post_event, callhook, uuid, statuses[i % 5])
               for i in range(count)]
    callhook.wait_for_log(QUEUED_RE.pattern, count=queued + count)
    return handles


def connection_refused(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def check_drain(checks):
    """SIGTERM waits for the requests in flight, then exits 0."""
    stack = Stack(callhook_args=BASE_ARGS + ["--shutdown-timeout", "600"])
    callhook = stack.callhook
    handles = hold_requests(stack, 5, "drain")

    callhook.send_signal(signal.SIGTERM)
    callhook.wait_for_log(r"shutting down on SIGTERM: 5 webhook requests "
                          r"waiting for redis")
    checks.check(callhook.proc.poll() is None,
                 "drain: callhook exited while requests were in flight")
    wait_until(lambda: connection_refused(callhook.public_host,
                                          callhook.public_port),
               20, what="the public listener to close")
    checks.check(connection_refused(callhook.admin_host, callhook.admin_port),
                 "drain: the admin listener still accepts connections")

    stack.db.command("CLIENT", "UNPAUSE")
    for i, handle in enumerate(handles):
        resp = handle.join(timeout=60)
        checks.equal(resp.status, 200, f"drain: in-flight request {i}")
        checks.equal(resp.body, b'{"result":"applied"}',
                     f"drain: in-flight request {i} body")
    checks.check(callhook.check_clean_exit(checks),
                 "drain: callhook did not exit cleanly")
    lines = callhook.log_lines()
    checks.equal(sum(1 for line in lines if COMPLETE_RE.search(line)), 1,
                 "drain: 'shutdown complete' lines")
    checks.equal(stack.db.hgetall("call:{drain}").get("events"), "5",
                 "drain: events stored")


def check_deadline(checks):
    """With --shutdown-timeout 1, held requests get 503 and callhook
    exits 0 without waiting for Redis."""
    stack = Stack(callhook_args=BASE_ARGS + ["--shutdown-timeout", "1"])
    callhook = stack.callhook
    handles = hold_requests(stack, 3, "deadline")
    callhook.send_signal(signal.SIGTERM)
    for i, handle in enumerate(handles):
        resp = handle.join(timeout=60)
        checks.equal(resp.status, 503, f"deadline: in-flight request {i}")
    callhook.check_clean_exit(checks)
    log = callhook.log()
    checks.check(re.search(r"shutdown timeout: 3 webhook requests ", log),
                 "deadline: no 'shutdown timeout' line naming 3 requests")
    checks.check(any(COMPLETE_RE.search(line) for line in log.splitlines()),
                 "deadline: no 'shutdown complete' line")
    stack.db.command("CLIENT", "UNPAUSE")


def check_second_signal(checks):
    """A second SIGTERM stops waiting at once."""
    stack = Stack(callhook_args=BASE_ARGS + ["--shutdown-timeout", "600"])
    callhook = stack.callhook
    handles = hold_requests(stack, 2, "second")
    callhook.send_signal(signal.SIGTERM)
    callhook.wait_for_log(r"shutting down on SIGTERM")
    callhook.send_signal(signal.SIGTERM)
    for i, handle in enumerate(handles):
        resp = handle.join(timeout=60)
        checks.equal(resp.status, 503, f"second signal: in-flight request {i}")
    callhook.check_clean_exit(checks)
    checks.check("second signal SIGTERM: exiting without waiting"
                 in callhook.log(), "second signal: no warning logged")
    stack.db.command("CLIENT", "UNPAUSE")


def check_sigint(checks):
    stack = Stack()
    resp = post_event(stack.callhook, "sigint", "ringing")
    checks.equal(resp.status, 200, "SIGINT: request before the signal")
    stack.callhook.send_signal(signal.SIGINT)
    checks.equal(stack.callhook.wait(), 0, "SIGINT: exit status")
    log = stack.callhook.log()
    checks.check("shutting down on SIGINT" in log, "SIGINT: no shutdown line")
    checks.check(any(COMPLETE_RE.search(line) for line in log.splitlines()),
                 "SIGINT: no 'shutdown complete' line")


def body(checks):
    check_drain(checks)
    check_deadline(checks)
    check_second_signal(checks)
    check_sigint(checks)


if __name__ == "__main__":
    run_test("shutdown", body)
