"""Check the connection limits: oversized bodies and headers, clients that
send a request too slowly, idle connections and --max-connections."""

import json
import select
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stack, raw_exchange, run_test, scaled  # noqa: E402

MAX_BODY = 1024
BYTE_INTERVAL = 0.5  # seconds between the bytes a slow client sends


def event_body(uuid, size):
    """Return a JSON event of exactly size bytes."""
    head = '{"uuid":"%s","status":"ringing","pad":"' % uuid
    return (head + "x" * (size - len(head) - 2) + '"}').encode()


def post_request(body, extra_headers=b""):
    return (b"POST /call_events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n" + extra_headers
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def status_of(raw):
    """Return the status code of a raw HTTP response, or None."""
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


def check_body_limit(checks, stack):
    host, port = stack.callhook.public_host, stack.callhook.public_port
    client = stack.callhook.public()

    resp = client.post("/call_events", event_body("at-limit", MAX_BODY))
    checks.equal(resp.status, 200, "body of exactly --max-body bytes")
    stack.db.flushall()

    for size in (MAX_BODY + 1, 4 * MAX_BODY, 1024 * 1024):
        body = event_body(f"over-{size}", size)
        try:
            resp = stack.callhook.public().post("/call_events", body)
            status = resp.status
        except OSError as exc:
            status = f"connection error {exc!r}"
        checks.equal(status, 413, f"body of {size} bytes over http.client")
        raw = raw_exchange(host, port, post_request(body), half_close=False)
        checks.equal(status_of(raw), 413, f"body of {size} bytes, raw")

    body = event_body("chunked", 8 * MAX_BODY)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 500]), body[i:i + 500])
                      for i in range(0, len(body), 500)) + b"0\r\n\r\n"
    raw = raw_exchange(host, port, b"POST /call_events HTTP/1.1\r\n"
                       b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
                       half_close=False)
    checks.equal(status_of(raw), 413, "chunked body over --max-body")

    raw = raw_exchange(host, port, post_request(
        event_body("big-header", 100),
        b"X-Padding: " + b"p" * 20000 + b"\r\n"))
    checks.check(status_of(raw) in (400, 431),
                 f"headers over --max-headers: got {raw[:40]!r}")
    checks.equal(stack.db.dbsize(), 0, "DBSIZE after the oversized requests")

    resp = client.post("/call_events", event_body("after-limit", 200))
    checks.equal(resp.status, 200, "request after the oversized ones")
    stack.db.flushall()


class NormalTraffic(threading.Thread):
    """A thread that sends valid events until stopped and records each
    status."""

    def __init__(self, callhook):
        super().__init__(daemon=True)
        self.callhook = callhook
        self.statuses = []
        self.stop_event = threading.Event()

    def run(self):
        client = self.callhook.public()
        # Bounded: at most 2000 requests, one every 50 ms.
        for i in range(2000):
            if self.stop_event.is_set():
                break
            try:
                resp = client.post("/call_events", json.dumps(
                    {"uuid": f"steady-{i}", "status": "ringing"}))
                self.statuses.append(resp.status)
            except OSError as exc:
                self.statuses.append(repr(exc))
                client.close()
            time.sleep(0.05)

    def stop(self):
        self.stop_event.set()
        self.join(scaled(30))


def trickle(host, port, prefix, data):
    """Send prefix at once, then data one byte every BYTE_INTERVAL seconds.

    Returns how many bytes of data went out before the server closed the
    connection, or None if all of it went out.
    """
    sock = socket.create_connection((host, port), timeout=scaled(30))
    try:
        sock.sendall(prefix)
        for sent in range(len(data)):
            try:
                sock.sendall(data[sent:sent + 1])
            except OSError:
                return sent
            readable, _, _ = select.select([sock], [], [], BYTE_INTERVAL)
            if readable:
                try:
                    if sock.recv(4096) == b"":
                        return sent + 1
                except OSError:
                    return sent + 1
        return None
    finally:
        sock.close()


def check_slow_clients(checks):
    stack = Stack(callhook_args=["--request-timeout", "2"])
    host, port = stack.callhook.public_host, stack.callhook.public_port
    body = b'{"uuid":"slow","status":"ringing"}' + b" " * 60
    headers = (b"POST /call_events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
    cases = {
        "headers": (b"", headers + body),
        "body": (headers, body),
    }
    for name, (prefix, data) in cases.items():
        traffic = NormalTraffic(stack.callhook)
        traffic.start()
        closed_after = trickle(host, port, prefix, data)
        traffic.stop()
        checks.check(closed_after is not None,
                     f"slow {name}: the client sent all {len(data)} bytes at "
                     f"one byte per {BYTE_INTERVAL} s without being "
                     f"disconnected")
        checks.check(len(traffic.statuses) > 0,
                     f"slow {name}: the normal client sent nothing")
        checks.check(all(s == 200 for s in traffic.statuses),
                     f"slow {name}: the normal client got "
                     f"{sorted(set(map(str, traffic.statuses)))}")
    checks.equal(stack.db.command("EXISTS", "call:{slow}"), 0,
                 "the slow client's event must not be stored")
    stack.callhook.check_clean_exit(checks)


def check_idle_timeout(checks):
    stack = Stack(callhook_args=["--idle-timeout", "1"])
    sock = socket.create_connection(
        (stack.callhook.public_host, stack.callhook.public_port),
        timeout=scaled(30))
    try:
        data = sock.recv(1)
    except (socket.timeout, OSError) as exc:
        data = exc
    sock.close()
    checks.equal(data, b"", "an idle connection is closed by the server")
    stack.callhook.check_clean_exit(checks)


def check_max_connections(checks):
    stack = Stack(callhook_args=["--max-connections", "2"])
    address = (stack.callhook.public_host, stack.callhook.public_port)
    holders = []
    for i in range(2):
        sock = socket.create_connection(address, timeout=scaled(30))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        checks.check(sock.recv(4096).startswith(b"HTTP/1.1 200"),
                     f"connection {i} within --max-connections")
        holders.append(sock)

    third = socket.create_connection(address, timeout=scaled(30))
    third.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Connection: close\r\n\r\n")
    readable, _, _ = select.select([third], [], [], 0.5)
    checks.check(not readable, "a connection over --max-connections was "
                               "served while the others were open")
    holders.pop().close()
    reply = b""
    while True:
        chunk = third.recv(4096)
        if not chunk:
            break
        reply += chunk
    third.close()
    checks.check(reply.startswith(b"HTTP/1.1 200"),
                 f"the waiting connection is served once another closes: "
                 f"{reply[:40]!r}")
    for sock in holders:
        sock.close()
    stack.callhook.check_clean_exit(checks)


def body(checks):
    stack = Stack(callhook_args=["--max-body", str(MAX_BODY),
                                 "--max-headers", "4096"])
    check_body_limit(checks, stack)
    stack.callhook.check_clean_exit(checks)
    check_slow_clients(checks)
    check_idle_timeout(checks)
    check_max_connections(checks)


if __name__ == "__main__":
    run_test("limits", body)
