"""Operations: metrics, JSON logs, the event stream, the call index, the
status and watch commands, runtime log levels and --workers.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

# Debian's prometheus client lives in the system Python, which may differ
# from the python3 running this test.
SYSTEM_PYTHON = "/usr/bin/python3"
PARSE_METRICS = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        key = sample.name + json.dumps(sample.labels, sort_keys=True)
        out[key] = sample.value
print(json.dumps(out))
"""
SECRET = "OpsSignatureSecret42"
ADMIN_TOKEN = "ops-admin-token-7f3a"


def event(call, status, second=0):
    return json.dumps({"uuid": call, "conversation_uuid": "CON-" + call,
                       "status": status, "direction": "outbound",
                       "from": "14155550100", "to": "14155550123",
                       "timestamp": f"2026-12-04T10:00:{second:02d}.000Z"},
                      separators=(",", ":"))


def scrape(checks, callhook):
    resp = callhook.admin().get("/metrics")
    checks.equal(resp.status, 200, "/metrics status")
    checks.check(resp.headers.get("content-type", "").startswith(
        "text/plain; version=0.0.4"), "/metrics content type")
    parsed = subprocess.run([SYSTEM_PYTHON, "-c", PARSE_METRICS],
                            input=resp.body, capture_output=True,
                            timeout=30)
    checks.equal(parsed.returncode, 0, "prometheus parser accepts /metrics "
                                       f"({parsed.stderr[-300:]!r})")
    return json.loads(parsed.stdout or b"{}")


def test_metrics_logs_stream(checks):
    stack = harness.Stack(callhook_args=[
        "--log-format", "json", "--spool-dir", "",
        "--admin-token", ADMIN_TOKEN])
    callhook, db = stack.callhook, stack.db
    client = callhook.public()
    applied = 'callhook_events_total{"outcome": "applied"}'

    before = scrape(checks, callhook)
    calls = [str(uuidlib.uuid4()) for _ in range(3)]
    for call in calls:
        for i, status in enumerate(["started", "ringing", "completed"]):
            checks.equal(client.post("/call_events",
                                     event(call, status, i)).status, 200,
                         f"event {status}")
    # A duplicate: applied must not move for it, nor the stream grow.
    client.post("/call_events", event(calls[0], "started", 0))
    client.post("/call_events", "{not json")
    after = scrape(checks, callhook)
    checks.equal(after.get(applied, 0) - before.get(applied, 0), 9,
                 "applied counter moved by the events sent")
    checks.equal(after.get('callhook_events_total{"outcome": "duplicate"}',
                           0), 1, "duplicate counter")
    checks.check(after.get('callhook_events_total{"outcome": "rejected"}', 0)
                 >= 1, "rejected counter")
    checks.check(after.get("callhook_webhook_duration_seconds_count{}", 0)
                 >= 10, "webhook latency histogram counts requests")
    checks.equal(after.get("callhook_redis_connected{}"), 1.0,
                 "redis connected gauge")

    # The stream has one entry per applied event and none for duplicates.
    checks.equal(db.command("XLEN", "callhook:events"), 9, "stream length")
    entries = db.command("XRANGE", "callhook:events", "-", "+")
    first = dict(zip(entries[0][1][0::2], entries[0][1][1::2]))
    checks.equal(first.get(b"id"), calls[0].encode(), "stream entry id")
    checks.equal(first.get(b"status"), b"started", "stream entry status")
    checks.equal(json.loads(first.get(b"event")).get("uuid"), calls[0],
                 "stream entry event")

    # The index lists calls by status without scanning the keyspace.
    listed = callhook.admin().get("/calls?status=completed&limit=10").json()
    checks.equal(sorted(c["uuid"] for c in listed["calls"]), sorted(calls),
                 "GET /calls?status=completed")
    checks.equal(callhook.admin().get("/calls?status=ringing").json(),
                 {"calls": []}, "no call left in ringing")

    # SIGUSR1 lowers the level to debug: request lines appear.
    callhook.send_signal(signal.SIGUSR1)
    callhook.wait_for_log(r"log level is now debug", timeout=10)
    client.get("/healthz")
    callhook.wait_for_log(r'"msg":"request rid=', timeout=10)

    stack.callhook.check_clean_exit(checks)
    for line in callhook.log_lines():
        try:
            record = json.loads(line)
        except ValueError:
            checks.check(False, f"log line is not JSON: {line[:120]!r}")
            continue
        checks.check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                                  record.get("time", "")) is not None,
                     f"log time is RFC 3339 with ms: {record.get('time')}")
        checks.check(record.get("level") in ("debug", "info", "warn",
                                             "error"), "log level field")
        checks.check(bool(record.get("msg")), "log msg field")
        if "rid=" in record.get("msg", ""):
            checks.check("rid" in record, f"rid field in {line[:100]}")
        checks.check(ADMIN_TOKEN not in line, "no admin token in the log")
        checks.check("14155550100" not in line, "no whole phone number")


def test_status_and_watch(checks):
    stack = harness.Stack(callhook_args=["--spool-dir", ""])
    callhook, redis = stack.callhook, stack.redis
    client = callhook.public()
    binary = harness.callhook_binary()
    env = harness.callhook_env()

    watch_log = callhook.workdir / "watch.txt"
    with open(watch_log, "wb") as out:
        watcher = subprocess.Popen([binary, "watch", "--redis", redis.url()],
                                   stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    try:
        time.sleep(1.5)  # watch starts from the newest entry
        call = str(uuidlib.uuid4())
        for i, status in enumerate(["started", "ringing", "busy"]):
            client.post("/call_events", event(call, status, i))
        harness.wait_until(lambda: watch_log.read_text().count(call) >= 3,
                           15, what="three watch lines")
        text = watch_log.read_text()
        checks.check(re.search(rf"{call} busy", text) is not None,
                     f"watch shows the status change: {text[-300:]!r}")
        checks.check("\033[" not in text, "no colour when not a terminal")

        # Redis restarts: watch reconnects and goes on after the last id.
        redis.kill()
        time.sleep(1)
        redis.start()
        callhook.wait_ready(timeout=30)
        second = str(uuidlib.uuid4())
        client = callhook.public()
        harness.wait_until(
            lambda: client.post("/call_events",
                                event(second, "answered", 3)).status == 200,
            20, what="callhook back after the Redis restart")
        harness.wait_until(lambda: second in watch_log.read_text(), 20,
                           what="watch line after the Redis restart")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    checks.equal(watcher.returncode, 0, "watch exits 0 on SIGTERM")

    result = subprocess.run([binary, "status", "--redis", redis.url(),
                             second], capture_output=True, text=True,
                            timeout=30, env=env)
    checks.equal(result.returncode, 0, "status exit code")
    checks.check(f"call {second}" in result.stdout and "answered" in
                 result.stdout, f"status output: {result.stdout[:300]!r}")
    result = subprocess.run([binary, "status", "--json", "--redis",
                             redis.url(), second], capture_output=True,
                            text=True, timeout=30, env=env)
    doc = json.loads(result.stdout)
    checks.equal(doc["record"]["status"], "answered", "status --json record")
    checks.equal(len(doc["events"]), 1, "status --json history")
    result = subprocess.run([binary, "status", "--redis", redis.url(),
                             "no-such-call"], capture_output=True, text=True,
                            timeout=30, env=env)
    checks.equal(result.returncode, 1, "status of an unknown call")
    checks.check("not found" in result.stderr, "status says not found")
    callhook.check_clean_exit(checks)


def test_workers(checks):
    redis = harness.RedisServer().start()
    callhook = harness.Callhook(redis.url(), ["--workers", "2",
                                              "--spool-dir", ""])
    callhook.start(wait_ready=True)
    lines = callhook.wait_for_log(r"worker \d started pid=(\d+)", count=2)
    pids = [int(re.search(r"pid=(\d+)", line).group(1)) for line in lines]
    client = callhook.public()
    statuses = [client.post("/call_events",
                            event(str(uuidlib.uuid4()), "started")).status
                for _ in range(20)]
    checks.equal(set(statuses), {200}, "two workers serve one port")

    os.kill(pids[1], signal.SIGKILL)
    callhook.wait_for_log(r"worker 1 pid=\d+ killed by signal 9", timeout=10)
    callhook.wait_for_log(r"worker 1 started pid=", count=2, timeout=10)
    # With the spool off, a worker answers 503 until its Redis connection
    # is ready, so wait for the new worker's ready line.
    callhook.wait_for_log(r" ready public=", count=3, timeout=10)
    statuses = []
    for _ in range(20):
        try:
            statuses.append(callhook.public().post(
                "/call_events", event(str(uuidlib.uuid4()), "started")).status)
        except OSError:
            statuses.append(None)
    checks.equal(set(statuses), {200}, "served after a worker was killed")
    checks.equal(callhook.stop(), 0, "supervisor exit status")
    checks.check(any("supervisor exiting" in line
                     for line in callhook.log_lines()), "supervisor exits")


def test_framing_and_silence(checks):
    stack = harness.Stack(callhook_args=["--spool-dir", "",
                                         "--request-timeout", "2"])
    callhook, db = stack.callhook, stack.db
    host, port = callhook.public_host, callhook.public_port

    def framed(headers, payload):
        return (b"POST /call_events HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\n" + headers +
                b"\r\n" + payload)

    call = str(uuidlib.uuid4())
    payload = event(call, "started").encode()
    cases = {
        "two Content-Length headers": framed(
            b"Content-Length: %d\r\nContent-Length: 5\r\n" % len(payload),
            payload),
        "Content-Length with a sign": framed(
            b"Content-Length: +%d\r\n" % len(payload), payload),
        "Transfer-Encoding gzip, chunked": framed(
            b"Transfer-Encoding: gzip, chunked\r\n",
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)),
    }
    for name, raw in cases.items():
        reply = harness.raw_exchange(host, port, raw, timeout=10)
        checks.check(reply.startswith(b"HTTP/1.1 400"),
                     f"{name}: 400 (got {reply[:40]!r})")
    checks.equal(db.command("EXISTS", f"call:{{{call}}}"), 0,
                 "misframed requests stored nothing")

    # A connection that never sends a byte is closed after the request
    # timeout, not held until the idle timeout.
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=30) as silent:
        data = silent.recv(100)
    elapsed = time.monotonic() - start
    checks.equal(data, b"", "silent connection closed without a reply")
    checks.check(elapsed < 30, f"silent connection closed ({elapsed:.1f} s)")
    callhook.check_clean_exit(checks)


def body(checks):
    test_framing_and_silence(checks)
    test_metrics_logs_stream(checks)
    test_status_and_watch(checks)
    test_workers(checks)


if __name__ == "__main__":
    harness.run_test("operations", body)
