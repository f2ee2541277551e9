"""Kill Redis with SIGKILL under a running callhook, then start it again
on the same port.

Webhooks get 503 during the outage, and so do the requests that were
waiting for Redis when it crashed. Service comes back without restarting
callhook. Each of the two outages logs one warning and one recovery line.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stack, run_in_thread, run_test, wait_until  # noqa: E402


UUID = "3e5a7c9e-1b3d-4f5a-8c7e-9a1b3c5d7e9f"
WARNING_RE = re.compile(r" warn +redis unavailable at ")
# The count after "unavailable;" is how many events Redis missed.
RECOVERY_RE = re.compile(r" info +redis connected at \S+ after [0-9.]+ s "
                         r"unavailable; (\d+) ")
IN_FLIGHT = 3
DURING_OUTAGE = 5


def event(status, timestamp):
    return json.dumps({"uuid": UUID, "status": status,
                       "timestamp": timestamp})


def post_event(callhook, body):
    client = callhook.public()
    try:
        return client.post("/call_events", body)
    finally:
        client.close()


def readyz(callhook):
    return callhook.admin().get("/readyz")


def outage(checks, stack, label, sequence):
    """Run one outage.

    Returns how many requests were turned away while callhook knew that
    Redis was down, and how many were in flight when it crashed.
    """
    callhook = stack.callhook

    queued_re = re.compile(r" debug event rid=\d+ call[= ]")
    queued = sum(1 for line in callhook.log_lines() if queued_re.search(line))

    # Hold some requests inside Redis, so the crash catches them in flight.
    stack.db.command("CLIENT", "PAUSE", "60000", "ALL")
    waiting = [run_in_thread(post_event, callhook,
                             event("ringing", f"2026-12-04T10:0{sequence}:"
                                              f"0{i}.000Z"))
               for i in range(IN_FLIGHT)]
    callhook.wait_for_log(queued_re.pattern, count=queued + IN_FLIGHT)
    stack.redis.kill()
    stack.db.close()
    for i, handle in enumerate(waiting):
        resp = handle.join(timeout=30)
        checks.equal(resp.status, 503, f"{label}: in-flight request {i}")

    wait_until(lambda: readyz(callhook).status == 503, 30,
               what="/readyz 503 after the crash")
    resp = readyz(callhook)
    checks.equal(resp.status, 503, f"{label}: /readyz during the outage")
    checks.equal(resp.json().get("status"), "unavailable",
                 f"{label}: /readyz body during the outage")
    checks.equal(callhook.public().get("/healthz").status, 200,
                 f"{label}: public /healthz during the outage")
    checks.equal(callhook.admin().get("/healthz").status, 200,
                 f"{label}: admin /healthz during the outage")
    checks.equal(callhook.admin().get(f"/calls/{UUID}").status, 503,
                 f"{label}: admin lookup during the outage")

    client = callhook.public()
    for i in range(DURING_OUTAGE):
        resp = client.post("/call_events",
                           event("answered", f"2026-12-04T10:1{sequence}:"
                                             f"0{i}.000Z"))
        checks.equal(resp.status, 503, f"{label}: request {i} during the "
                                       f"outage")
        checks.check(isinstance(resp.json().get("error"), str),
                     f"{label}: 503 body {resp.body!r} has no error")
    client.close()

    stack.redis.restart()
    stack.db = stack.redis.client()
    wait_until(lambda: readyz(callhook).status == 200, 60,
               what="/readyz 200 after Redis came back")
    resp = post_event(callhook, event("completed",
                                      f"2026-12-04T10:2{sequence}:00.000Z"))
    checks.equal(resp.status, 200, f"{label}: request after the restart")
    checks.equal(stack.db.hgetall(f"call:{{{UUID}}}").get("status"),
                 "completed", f"{label}: status stored after the restart")
    return DURING_OUTAGE, IN_FLIGHT


def body(checks):
    # With the spool off, callhook replies 503 while Redis cannot take an
    # event. The spool, which replies 200 instead, has tests of its own.
    # --redis-timeout 0 keeps callhook from dropping the paused connection
    # on its own, so only the SIGKILL ends it.
    stack = Stack(callhook_args=["--log-level", "debug", "--spool-dir", "",
                                 "--redis-timeout", "0"])
    resp = post_event(stack.callhook, event("started",
                                            "2026-12-04T10:00:00.000Z"))
    checks.equal(resp.status, 200, "request before the outage")

    counts = []
    for sequence in (1, 2):
        label = f"outage {sequence}"
        counts.append(outage(checks, stack, label, sequence))
        lines = stack.callhook.log_lines()
        warnings = [line for line in lines if WARNING_RE.search(line)]
        checks.equal(len(warnings), sequence,
                     f"{label}: 'redis unavailable' warnings so far")
        recoveries = [RECOVERY_RE.search(line) for line in lines]
        recoveries = [m for m in recoveries if m]
        if checks.equal(len(recoveries), sequence,
                        f"{label}: recovery lines so far"):
            turned_away, in_flight = counts[-1]
            got = int(recoveries[-1].group(1))
            checks.check(turned_away <= got <= turned_away + in_flight,
                         f"{label}: recovery line counts {got} events, but "
                         f"{turned_away} got 503 while Redis was known to "
                         f"be down and {in_flight} more when it crashed")
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("redis_restart", body)
