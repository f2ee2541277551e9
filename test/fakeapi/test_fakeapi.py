#!/usr/bin/env python3
"""End-to-end test of the fake Voice API, over loopback only.

Usage: test_fakeapi.py FAKEAPI FAKEAPI_TOKEN OPENSSL

Generates two RSA key pairs with the openssl command, starts fakeapi and a
small webhook receiver, and checks authentication, body validation, rate
limiting, every control mode and the event webhooks. Prints
"N passed, N failed" and exits non-zero on any failure.
"""

import http.client
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
RATE = 5
RETRY_AFTER = 2
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                     r"-[0-9a-f]{12}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

passed = 0
failed = 0


def check(condition, description):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"check failed: {description}", file=sys.stderr)


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every webhook the fake API sends."""

    received = []
    lock = threading.Lock()

    def _record(self, body):
        with Receiver.lock:
            Receiver.received.append({
                "method": self.command,
                "path": self.path,
                "body": body,
            })
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self._record(self.rfile.read(length))

    def do_GET(self):
        self._record(b"")

    def log_message(self, fmt, *args):
        pass


def take_events(uuid, count, timeout=3.0):
    """Waits for count webhooks of call uuid; returns them in arrival order."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Receiver.lock:
            mine = [r for r in Receiver.received if uuid in r["path"] or
                    uuid.encode() in r["body"]]
        if len(mine) >= count:
            return mine
        time.sleep(0.02)
    return mine


class Fake:
    def __init__(self, exe, token_exe, key, other_key, public_key):
        self.token_exe = token_exe
        self.key = key
        self.other_key = other_key
        self.proc = subprocess.Popen(
            [exe, "--listen", "127.0.0.1:0", "--public-key", public_key,
             "--application-id", APP_ID, "--rate", str(RATE),
             "--retry-after", str(RETRY_AFTER)],
            stderr=subprocess.PIPE, text=True)
        self.port = None
        deadline = time.monotonic() + 10
        while self.port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.match(r"fakeapi listening on 127\.0\.0\.1:(\d+)$",
                         line.strip())
            if m:
                self.port = int(m.group(1))
        if self.port is None:
            raise RuntimeError("fakeapi did not print its port")
        # Keep draining stderr so the fake never blocks on a full pipe.
        self.log = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def token(self, *extra, key=None, app_id=APP_ID):
        out = subprocess.run(
            [self.token_exe, "--private-key", key or self.key,
             "--application-id", app_id, *extra],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def request(self, method, path, body=None, headers=None, timeout=5):
        conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else \
            json.dumps(body).encode()
        try:
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return resp.status, dict(resp.getheaders()), parsed
        finally:
            conn.close()

    def call(self, body, token=None, timeout=5):
        token = token or self.token()
        return self.request("POST", "/v1/calls", body,
                            {"Authorization": f"Bearer {token}",
                             "Content-Type": "application/json"},
                            timeout=timeout)

    def control(self, body):
        return self.request("POST", "/_fake/mode", body)

    def stats(self):
        return self.request("GET", "/_fake/stats")[2]

    def reset(self):
        return self.request("POST", "/_fake/reset")


def call_body(receiver_port, number="14155550100", **overrides):
    body = {
        "to": [{"type": "phone", "number": number}],
        "from": {"type": "phone", "number": "14155550199"},
        "ncco": [{"action": "talk", "text": "Hello"}],
        "event_url": [f"http://127.0.0.1:{receiver_port}/events"],
    }
    for name, value in overrides.items():
        if value is None:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def check_problem(status, headers, body, want_status, want_title, what):
    check(status == want_status, f"{what}: status {status} == {want_status}")
    check(headers.get("Content-Type") == "application/problem+json",
          f"{what}: problem content type")
    check(isinstance(body, dict) and body.get("title") == want_title,
          f"{what}: title {body and body.get('title')!r}")
    check(isinstance(body, dict) and
          body.get("type", "").startswith("https://developer.nexmo.com/"),
          f"{what}: type")
    check(isinstance(body, dict) and isinstance(body.get("detail"), str),
          f"{what}: detail")


def test_create_call(fake, rport):
    status, headers, body = fake.call(call_body(rport))
    check(status == 201, f"valid call: status {status}")
    check(headers.get("Content-Type") == "application/json",
          "valid call: content type")
    check(UUID_RE.match(body["uuid"]) is not None, "valid call: uuid")
    check(body["status"] == "started", "valid call: status started")
    check(body["direction"] == "outbound", "valid call: direction")
    check(body["conversation_uuid"].startswith("CON-") and
          UUID_RE.match(body["conversation_uuid"][4:]) is not None,
          "valid call: conversation_uuid")

    events = take_events(body["uuid"], 4)
    statuses = [json.loads(e["body"])["status"] for e in events]
    check(statuses == ["started", "ringing", "answered", "completed"],
          f"normal events in order: {statuses}")
    for e in events:
        ev = json.loads(e["body"])
        check(e["method"] == "POST" and e["path"] == "/events",
              "webhook is a POST to the event_url path")
        check(ev["from"] == "14155550199" and ev["to"] == "14155550100",
              "webhook from and to")
        check(ev["uuid"] == body["uuid"] and
              ev["conversation_uuid"] == body["conversation_uuid"],
              "webhook ids")
        check(ev["direction"] == "outbound", "webhook direction")
        check(TIMESTAMP_RE.match(ev["timestamp"]) is not None,
              f"webhook timestamp {ev['timestamp']}")
    completed = json.loads(events[-1]["body"])
    for field in ("start_time", "end_time", "duration", "rate", "price",
                  "network"):
        check(field in completed, f"completed carries {field}")
    stamps = [json.loads(e["body"])["timestamp"] for e in events]
    check(stamps == sorted(stamps), "timestamps follow the lifecycle")


def test_auth(fake, rport):
    body = call_body(rport)
    token = fake.token()
    check(fake.call(body, token)[0] == 201, "fresh token accepted")
    check_problem(*fake.call(body, token), 401, "Unauthorized",
                  "replayed jti")
    cases = [
        ("expired", fake.token("--iat-offset", "-2000")),
        ("iat in the future", fake.token("--iat-offset", "600")),
        ("wrong application", fake.token(app_id="another-app")),
        ("signed by another key", fake.token(key=fake.other_key)),
        ("not a JWT", "abc.def"),
        ("too large", "a" * 9000 + ".b.c"),
    ]
    for name, tok in cases:
        status, headers, problem = fake.call(body, tok)
        check_problem(status, headers, problem, 401, "Unauthorized", name)
        check(problem["type"] ==
              "https://developer.nexmo.com/api-errors#unauthorized",
              f"{name}: 401 type")
    status, headers, problem = fake.request("POST", "/v1/calls", body)
    check_problem(status, headers, problem, 401, "Unauthorized",
                  "no Authorization header")
    status, headers, problem = fake.request(
        "POST", "/v1/calls", body, {"Authorization": "Basic dXNlcjpwYXNz"})
    check_problem(status, headers, problem, 401, "Unauthorized",
                  "Basic scheme")


def invalid_names(problem):
    return {p["name"] for p in problem.get("invalid_parameters", [])}


def test_validation(fake, rport):
    status, headers, problem = fake.call(b"{\"to\": [")
    check_problem(status, headers, problem, 400, "Bad Request",
                  "invalid JSON")
    check(problem.get("invalid_parameters") == [],
          "invalid JSON: empty invalid_parameters")
    check_problem(*fake.call(b"[1, 2]"), 400, "Bad Request",
                  "array body")

    url = [f"http://127.0.0.1:{rport}/events"]
    cases = [
        ("no to", call_body(rport, to=None), {"to"}),
        ("empty to", call_body(rport, to=[]), {"to"}),
        ("to with +", call_body(rport, number="+14155550100"),
         {"to[0].number"}),
        ("to too short", call_body(rport, number="123456"),
         {"to[0].number"}),
        ("to too long", call_body(rport, number="1234567890123456"),
         {"to[0].number"}),
        ("sip endpoint", call_body(rport, to=[{"type": "sip",
                                               "uri": "sip:a@b"}]),
         {"to[0].type", "to[0].uri", "to[0].number"}),
        ("no from", call_body(rport, **{"from": None}), {"from"}),
        ("from and random_from_number",
         call_body(rport, random_from_number=True), {"from"}),
        ("random_from_number not boolean",
         call_body(rport, random_from_number="yes"),
         {"random_from_number"}),
        ("ncco and answer_url",
         call_body(rport, answer_url=["https://example.com/answer"]),
         {"ncco"}),
        ("neither ncco nor answer_url", call_body(rport, ncco=None),
         {"ncco"}),
        ("empty ncco", call_body(rport, ncco=[]), {"ncco"}),
        ("ncco without action", call_body(rport, ncco=[{"text": "x"}]),
         {"ncco[0]"}),
        ("answer_url not array",
         call_body(rport, ncco=None, answer_url="https://example.com/a"),
         {"answer_url"}),
        ("two event URLs", call_body(rport, event_url=url + url),
         {"event_url"}),
        ("event_url not a URL", call_body(rport, event_url=["events"]),
         {"event_url"}),
        ("bad machine_detection",
         call_body(rport, machine_detection="maybe"), {"machine_detection"}),
        ("ringing_timer 0", call_body(rport, ringing_timer=0),
         {"ringing_timer"}),
        ("ringing_timer 121", call_body(rport, ringing_timer=121),
         {"ringing_timer"}),
        ("length_timer 7201", call_body(rport, length_timer=7201),
         {"length_timer"}),
        ("length_timer as text", call_body(rport, length_timer="60"),
         {"length_timer"}),
        ("unknown field", call_body(rport, record=True), {"record"}),
    ]
    for name, body, names in cases:
        status, headers, problem = fake.call(body)
        check_problem(status, headers, problem, 400, "Bad Request", name)
        got = invalid_names(problem or {})
        check(got == names, f"{name}: invalid_parameters {got} == {names}")

    valid = [
        ("random_from_number",
         call_body(rport, random_from_number=True, **{"from": None})),
        ("answer_url", call_body(rport, ncco=None,
                                 answer_url=["https://example.com/answer"],
                                 answer_method="POST")),
        ("timers and machine detection",
         call_body(rport, ringing_timer=120, length_timer=7200,
                   machine_detection="hangup")),
        ("no event_url", call_body(rport, event_url=None)),
    ]
    for name, body in valid:
        status, _, result = fake.call(body)
        check(status == 201, f"{name}: status {status}")


def test_rate_limit(fake, rport):
    fake.reset()
    tokens = [fake.token() for _ in range(RATE + 3)]
    time.sleep(1.1)  # let the window of earlier tests empty
    results = []
    start = time.monotonic()
    for tok in tokens:
        status, headers, problem = fake.call(
            call_body(rport, event_url=None), tok)
        results.append((status, headers, problem))
    elapsed = time.monotonic() - start
    if elapsed >= 1.0:
        print(f"note: rate test took {elapsed:.2f} s; counts may differ",
              file=sys.stderr)
    codes = [r[0] for r in results]
    check(codes == [201] * RATE + [429] * 3, f"rate limit codes {codes}")
    status, headers, problem = results[-1]
    check_problem(status, headers, problem, 429, "Too Many Requests",
                  "over the rate")
    check(headers.get("Retry-After") == str(RETRY_AFTER), "Retry-After")
    check(fake.stats()["max_calls_per_second"] == RATE,
          "max calls in one second")
    time.sleep(1.05)
    check(fake.call(call_body(rport, event_url=None))[0] == 201,
          "accepted again after a second")


def test_modes(fake, rport):
    fake.reset()
    status, _, settings = fake.control({"mode": "status", "status": 503,
                                        "count": 2})
    check(status == 200 and settings["mode"] == "status",
          "set mode status")
    for i in range(2):
        check_problem(*fake.call(call_body(rport)), 503,
                      "Service Unavailable", f"status mode call {i}")
    check(fake.call(call_body(rport))[0] == 201, "mode ends after count")

    fake.control({"mode": "status", "status": 429})
    check_problem(*fake.call(call_body(rport)), 429, "Too Many Requests",
                  "status mode with a 4xx")

    fake.control({"mode": "stall", "count": 1})
    try:
        fake.call(call_body(rport), timeout=1)
        stalled = False
    except TimeoutError:
        stalled = True
    stats = fake.stats()
    check(stats["stalled"] == 1, "stalled counted")
    check(stats["held_connections"] == 1, "stalled connection held")
    check(fake.call(call_body(rport))[0] == 201, "stall mode ends")
    check(stalled, "stalled request got no answer")

    fake.control({"mode": "close"})
    try:
        fake.call(call_body(rport))
        closed = False
    except (http.client.RemoteDisconnected, ConnectionResetError):
        closed = True
    check(closed, "close mode drops the connection")
    check(fake.stats()["closed"] == 1, "closed counted")

    before = fake.stats()["calls_placed"]
    fake.control({"mode": "status_after_place", "status": 500})
    status, headers, problem = fake.call(call_body(rport,
                                                   number="14155550177"))
    check_problem(status, headers, problem, 500, "Internal Server Error",
                  "status_after_place")
    stats = fake.stats()
    check(stats["calls_placed"] == before + 1,
          "status_after_place counts the call")
    check(stats["destinations"].get("14155550177") == 1,
          "status_after_place counts the destination")
    check(fake.call(call_body(rport))[0] == 201, "status_after_place ends")

    for bad in ({"mode": "status"}, {"mode": "status", "status": 200},
                {"mode": "sleep"}, {"count": 2}, {"events": "loud"},
                {"shuffle": "yes"}, {"colour": "red"}, [1]):
        status, _, _ = fake.control(bad)
        check(status == 400, f"control body {bad} rejected")
    check(fake.request("GET", "/_fake/mode")[2]["mode"] == "ok",
          "rejected control bodies change nothing")


def test_events(fake, rport):
    fake.reset()
    fake.control({"events": "busy"})
    _, _, body = fake.call(call_body(rport))
    events = [json.loads(e["body"]) for e in take_events(body["uuid"], 4)]
    check([e["status"] for e in events] ==
          ["started", "ringing", "busy", "completed"], "busy events")
    busy = events[2] if len(events) > 2 else {}
    check(busy.get("detail") == "unavailable" and busy.get("sip_code") == 486,
          "busy detail and sip_code")

    fake.control({"events": "normal", "shuffle": True})
    _, _, body = fake.call(call_body(rport))
    events = [json.loads(e["body"]) for e in take_events(body["uuid"], 4)]
    statuses = [e["status"] for e in events]
    check(sorted(statuses) == sorted(["started", "ringing", "answered",
                                      "completed"]), "shuffled: all events")
    check(statuses != ["started", "ringing", "answered", "completed"],
          f"shuffled: order changed {statuses}")

    fake.control({"shuffle": False, "duplicate": True})
    _, _, body = fake.call(call_body(rport))
    raw = [e["body"] for e in take_events(body["uuid"], 5)]
    check(len(raw) == 5, "duplicate: five deliveries")
    check(len(set(raw)) == 4, "duplicate: one body sent twice")
    time.sleep(0.2)
    check(len(take_events(body["uuid"], 6, timeout=0.1)) == 5,
          "duplicate: no sixth delivery")

    fake.control({"duplicate": False, "events": "none"})
    _, _, body = fake.call(call_body(rport))
    check(take_events(body["uuid"], 1, timeout=0.3) == [],
          "events none: nothing sent")

    fake.control({"events": "normal"})
    _, _, body = fake.call(call_body(rport, event_method="GET"))
    events = take_events(body["uuid"], 4)
    check(len(events) == 4 and all(e["method"] == "GET" for e in events),
          "event_method GET")
    check(len(events) > 0 and "status=started" in events[0]["path"],
          "GET webhook carries the fields in the query")

    refused_before = fake.stats()["webhooks"]["refused"]
    status, _, _ = fake.call(call_body(
        rport, event_url=["http://192.0.2.1:8080/events"]))
    check(status == 201, "non-loopback event_url still places the call")
    check(fake.stats()["webhooks"]["refused"] == refused_before + 4,
          "non-loopback event_url: webhooks refused")

    time.sleep(0.2)
    stats = fake.stats()
    # busy 4, shuffled 4, duplicate 5, none 0, GET 4
    check(stats["webhooks"]["sent"] == 17, "webhooks sent")
    check(stats["webhooks"]["responses"] == {"200": 17},
          f"webhook responses {stats['webhooks']['responses']}")
    check(stats["webhooks"]["failed"] == 0, "no webhook failed")
    check(stats["webhooks"]["pending"] == 0, "no webhook left pending")


def test_hostile(fake, rport):
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as s:
        s.sendall(b"POST /v1/calls HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 2097152\r\n\r\n")
        reply = s.recv(1024)
    check(reply.startswith(b"HTTP/1.1 413"), f"2 MiB body: {reply[:20]}")
    with socket.create_connection(("127.0.0.1", fake.port), timeout=5) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        try:
            s.recv(1024)
        except OSError:
            pass
    status, _, _ = fake.request("GET", "/v1/calls")
    check(status == 405, f"GET /v1/calls: status {status}")
    check(fake.request("GET", "/nothing")[0] == 404, "unknown path")
    check(fake.request("GET", "/_fake/nothing")[0] == 404,
          "unknown control path")
    status, _, _ = fake.request("POST", "/v1/calls", b"{}",
                                {"Authorization": "Bearer " + "."*20})
    check(status == 401, "dots-only token")
    check(fake.call(call_body(rport))[0] == 201, "still serving")


def test_reset(fake):
    fake.reset()
    stats = fake.stats()
    check(stats["calls_placed"] == 0 and stats["destinations"] == {} and
          stats["responses"] == {} and stats["max_calls_per_second"] == 0,
          "reset clears the statistics")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    exe, token_exe, openssl = sys.argv[1:]
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    rport = receiver.server_address[1]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    with tempfile.TemporaryDirectory() as tmp:
        key = os.path.join(tmp, "app.key")
        other = os.path.join(tmp, "other.key")
        pub = os.path.join(tmp, "app.pub")
        for path in (key, other):
            subprocess.run([openssl, "genpkey", "-algorithm", "RSA",
                            "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                            path], check=True, capture_output=True)
        subprocess.run([openssl, "pkey", "-in", key, "-pubout", "-out",
                        pub], check=True, capture_output=True)

        fake = Fake(exe, token_exe, key, other, pub)
        try:
            test_create_call(fake, rport)
            test_auth(fake, rport)
            test_validation(fake, rport)
            test_rate_limit(fake, rport)
            test_modes(fake, rport)
            test_events(fake, rport)
            test_hostile(fake, rport)
            test_reset(fake)
        finally:
            fake.proc.send_signal(signal.SIGTERM)
            try:
                code = fake.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                fake.proc.kill()
                code = None
            check(code == 0, f"fakeapi exit status {code} after SIGTERM")
            if failed:
                sys.stderr.write("".join(fake.log[-40:]))
    receiver.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
