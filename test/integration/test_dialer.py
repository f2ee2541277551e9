"""The outbound dialer against a fake Voice API and a real redis-server.

The fake API runs in this process on a loopback port. It checks the RS256
token and the request body like the real API, replies 201 and then sends
the call's event webhooks to the request's event_url. Test controls make
it reply with a given status, stall, or close the connection. Every scenario
checks that each job ends with exactly one outcome and that no number is
called twice.

Needs openssl on PATH (to make and check the key), CALLHOOK_BIN, and for
the DNS scenario root and unshare; that scenario is skipped without them.
"""

import base64
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (Callhook, HttpClient, RedisServer, callhook_binary,  # noqa: E402
                     callhook_env, free_port, make_temp_dir, run_test,
                     scaled, wait_until)

APPLICATION_ID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
ADMIN_TOKEN = "test-admin-token-0123456789"
FROM = "14155550123"
# No proxy may carry the loopback requests elsewhere.
NO_PROXY_ENV = {"no_proxy": "*", "NO_PROXY": "*", "http_proxy": "",
                "https_proxy": "", "HTTP_PROXY": "", "HTTPS_PROXY": "",
                "ALL_PROXY": "", "all_proxy": ""}
FINAL_STATES = ("placed", "failed", "unknown")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def number(i):
    """Return a distinct destination number for job i."""
    return f"1415555{i:04d}"


# ---- keys -----------------------------------------------------------------


def make_key(workdir):
    """Create an RSA key pair; return (private PEM path, public PEM path)."""
    private = workdir / "private.pem"
    public = workdir / "public.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", str(private)],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout",
                    "-out", str(public)],
                   check=True, capture_output=True, timeout=60)
    os.chmod(private, 0o600)
    return private, public


def verify_rs256(signing_input, signature, public_path):
    """Check an RS256 signature with the openssl command."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        sig = Path(tmp) / "sig"
        data.write_bytes(signing_input)
        sig.write_bytes(signature)
        result = subprocess.run(["openssl", "dgst", "-sha256", "-verify",
                                 str(public_path), "-signature", str(sig),
                                 str(data)],
                                capture_output=True, timeout=30)
        return result.returncode == 0


# ---- the fake Voice API ---------------------------------------------------


class FakeVoiceApi:
    """POST /v1/calls with the real API's checks, plus test controls.

    Modes, consumed one request at a time: ("status", code) replies code
    without placing the call; ("stall",) keeps the request without a
    response; ("close",) drops the connection without a response;
    ("status_after_place", code) places the call, then replies code.
    """

    def __init__(self, public_key, application_id, rate=None):
        self.public_key = public_key
        self.application_id = application_id
        self.rate = rate
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.reset()
        handler = self._handler_class()
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0),
                                                      handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def reset(self, rate=None):
        with self.lock:
            self.rate = rate
            self.modes = []
            self.requests = Counter()   # every request, per destination
            self.placed = Counter()     # calls placed, per destination
            self.placed_times = []
            self.statuses = Counter()
            self.bodies = []
            self.tokens = []
            self.release.set()
            self.release = threading.Event()

    def push_mode(self, mode, count=1):
        with self.lock:
            self.modes.extend([mode] * count)

    def max_placed_per_second(self):
        with self.lock:
            times = sorted(self.placed_times)
        best = 0
        for i, start in enumerate(times):
            best = max(best, sum(1 for t in times[i:] if t - start < 1.0))
        return best

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def _take_mode(self):
        with self.lock:
            return self.modes.pop(0) if self.modes else None

    def _check_token(self, header):
        if not header or not header.startswith("Bearer "):
            return "missing bearer token"

        token = header[7:]
        parts = token.split(".")
        if len(parts) != 3:
            return "token is not a JWT"
        try:
            head = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError:
            return "token is not a JWT"

        if head.get("alg") != "RS256":
            return "alg is not RS256"
        if claims.get("application_id") != self.application_id:
            return "unknown application_id"
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or abs(iat - time.time()) > 60:
            return "iat is not now"
        if exp != iat + 900:
            return "exp is not iat + 900"
        if not claims.get("jti"):
            return "jti missing"

        if not verify_rs256(f"{parts[0]}.{parts[1]}".encode(), signature,
                            self.public_key):
            return "signature does not verify"
        with self.lock:
            if claims["jti"] in self.tokens:
                return "jti used twice"
            self.tokens.append(claims["jti"])
        return None

    @staticmethod
    def _check_body(body):
        """Return (destination, error) for a request body."""
        try:
            doc = json.loads(body)
        except ValueError:
            return None, "body is not JSON"
        to = doc.get("to")
        if (not isinstance(to, list) or len(to) != 1 or
                to[0].get("type") != "phone" or
                not re.fullmatch(r"[0-9]{7,15}", str(to[0].get("number")))):
            return None, "to must be one phone endpoint"
        dest = to[0]["number"]
        has_from = isinstance(doc.get("from"), dict)
        if has_from == bool(doc.get("random_from_number")):
            return dest, "give from or random_from_number"
        if ("ncco" in doc) == ("answer_url" in doc):
            return dest, "give ncco or answer_url"
        urls = doc.get("event_url")
        if not isinstance(urls, list) or len(urls) != 1:
            return dest, "event_url must be a list of one URL"
        return dest, None

    def _place(self, doc):
        call = str(uuid.uuid4())
        conv = "CON-" + str(uuid.uuid4())
        dest = doc["to"][0]["number"]
        with self.lock:
            self.placed[dest] += 1
            self.placed_times.append(time.monotonic())
        return call, conv

    def _send_events(self, doc, call, conv, statuses):
        base = {"uuid": call, "conversation_uuid": conv,
                "direction": "outbound", "to": doc["to"][0]["number"],
                "from": doc.get("from", {}).get("number", "")}
        url = doc["event_url"][0]
        match = re.match(r"http://([^/:]+):(\d+)(/.*)", url)
        for i, status in enumerate(statuses):
            event = dict(base, status=status,
                         timestamp=f"2026-12-04T10:00:0{i}.000Z")
            try:
                conn = http.client.HTTPConnection(match.group(1),
                                                  int(match.group(2)),
                                                  timeout=5)
                conn.request("POST", match.group(3), json.dumps(event),
                             {"Content-Type": "application/json"})
                conn.getresponse().read()
                conn.close()
            except OSError:
                pass

    def _handler_class(self):
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _reply(self, code, doc, headers=None):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
                with api.lock:
                    api.statuses[code] += 1

            def _problem(self, code, title, detail, headers=None):
                self._reply(code, {"type": "https://developer.vonage.com/"
                                           "api-errors", "title": title,
                                   "detail": detail}, headers)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.path != "/v1/calls":
                    self._problem(404, "Not Found", "no such route")
                    return

                error = api._check_token(self.headers.get("Authorization"))
                if error is not None:
                    self._problem(401, "Unauthorized", error)
                    return
                dest, error = api._check_body(body)
                if dest is not None:
                    with api.lock:
                        api.requests[dest] += 1
                        api.bodies.append(json.loads(body))
                if error is not None:
                    self._problem(400, "Bad Request", error)
                    return

                doc = json.loads(body)
                mode = api._take_mode()
                if mode is not None and mode[0] == "status":
                    headers = {"Retry-After": "1"} if mode[1] == 429 else {}
                    self._problem(mode[1], "Injected",
                                  f"injected status for {dest}", headers)
                    return
                if mode is not None and mode[0] == "stall":
                    api.release.wait(60)
                    self.close_connection = True
                    return
                if mode is not None and mode[0] == "close":
                    self.close_connection = True
                    return

                if mode is None and api.rate is not None:
                    now = time.monotonic()
                    with api.lock:
                        recent = [t for t in api.placed_times
                                  if now - t < 1.0]
                        over = len(recent) >= api.rate
                    if over:
                        self._problem(429, "Too Many Requests",
                                      "rate limit", {"Retry-After": "1"})
                        return

                call, conv = api._place(doc)
                # The first event may reach callhook before the response.
                api._send_events(doc, call, conv, ["started"])
                if mode is not None and mode[0] == "status_after_place":
                    self._problem(mode[1], "Injected", "placed, then failed")
                    return
                self._reply(201, {"uuid": call, "status": "started",
                                  "direction": "outbound",
                                  "conversation_uuid": conv})
                threading.Thread(target=api._send_events,
                                 args=(doc, call, conv,
                                       ["started", "ringing", "answered",
                                        "completed"]),
                                 daemon=True).start()

        return Handler


# ---- the stack ------------------------------------------------------------


class Dialer:
    """A callhook with the dialer on, its Redis and the fake API."""

    def __init__(self, redis, api, key, extra=(), env=None, workdir=None,
                 command_prefix=None, api_url=None):
        port = free_port()
        args = ["--listen", f"127.0.0.1:{port}",
                "--public-url", f"http://127.0.0.1:{port}",
                "--application-id", APPLICATION_ID,
                "--private-key", str(key),
                "--api-url", api_url or api.url,
                "--admin-token", ADMIN_TOKEN,
                "--spool-dir", "",
                "--shutdown-timeout", "5"] + list(extra)
        env = dict(NO_PROXY_ENV, **(env or {}))
        self.callhook = PrefixedCallhook(redis.url(), args, env=env,
                                         workdir=workdir,
                                         prefix=command_prefix)
        self.callhook.start()
        self.callhook.wait_for_log(r"dialer on: ")
        self.redis = redis
        self.db = redis.client()

    def job(self, job_id):
        return self.db.hgetall(f"dial:job:{{{job_id}}}")

    def jobs(self):
        """Return every job record, keyed by id."""
        keys = [k.decode() for k in self.db.command("KEYS", "dial:job:*")]
        return {k[len("dial:job:{"):-1]: self.db.hgetall(k) for k in keys}

    def post_call(self, job, token=ADMIN_TOKEN):
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        client = self.callhook.admin()
        try:
            return client.request("POST", "/calls", json.dumps(job)
                                  if not isinstance(job, str) else job,
                                  headers)
        finally:
            client.close()

    def push(self, job):
        text = job if isinstance(job, str) else json.dumps(job)
        self.db.command("LPUSH", "dial:queue", text)

    def wait_final(self, count, timeout=30):
        def done():
            jobs = self.jobs()
            final = [j for j in jobs.values()
                     if j.get("state") in FINAL_STATES]
            return jobs if len(final) >= count else None
        return wait_until(done, timeout, interval=0.1,
                          what=f"{count} jobs with an outcome")

    def wait_call(self, call_uuid, status="completed", timeout=15):
        def reached():
            record = self.db.hgetall(f"call:{{{call_uuid}}}")
            return record if record.get("status") == status else None
        return wait_until(reached, timeout, interval=0.1,
                          what=f"call {call_uuid} {status}")

    def stop(self, checks):
        """Stop callhook with SIGTERM; the Redis client stays open."""
        self.callhook.check_clean_exit(checks)


class PrefixedCallhook(Callhook):
    """A Callhook whose command can run under a wrapper such as unshare."""

    def __init__(self, redis_url, args, env=None, workdir=None, prefix=None):
        super().__init__(redis_url, args, workdir=workdir, env=env)
        self.prefix = prefix or []

    def command(self):
        return self.prefix + super().command()


def text_job(i, **extra):
    job = {"to": number(i), "from": FROM, "text": f"Hello {i}"}
    job.update(extra)
    return job


def check_processing_empty(checks, stack):
    checks.equal(stack.db.command("LLEN", "dial:processing"), 0,
                 "dial:processing length once every job ended")


def check_no_double_calls(checks, api):
    twice = {n: c for n, c in api.placed.items() if c > 1}
    checks.equal(twice, {}, "numbers the fake API placed more than once")


# ---- scenarios ------------------------------------------------------------


def scenario_each_source(checks, ctx):
    """A job from each source ends placed, with its call completed."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key)
    try:
        stack.push({"to": "+1 (415) 555-0001", "from": FROM,
                    "text": "from the queue"})
        resp = stack.post_call(text_job(2))
        checks.equal(resp.status, 202, "POST /calls status")
        admin_id = resp.json().get("job_id") if resp.status == 202 else None
        cli = subprocess.run(
            [callhook_binary(), "dial", "--to", number(3), "--from", FROM,
             "--text", "from the command line", "--redis", ctx.redis.url()],
            capture_output=True, text=True, timeout=scaled(30),
            env=callhook_env(NO_PROXY_ENV))
        checks.equal(cli.returncode, 0, f"callhook dial exit status "
                                        f"({cli.stderr.strip()})")
        cli_id = cli.stdout.strip()
        checks.check(re.fullmatch(r"[0-9a-f-]{36}", cli_id),
                     f"callhook dial prints a job id, got {cli_id!r}")

        jobs = stack.wait_final(3)
        for job_id, record in jobs.items():
            checks.equal(record.get("state"), "placed",
                         f"state of job {job_id}")
            checks.equal(record.get("attempts"), "1",
                         f"attempts of job {job_id}")
            if record.get("call_uuid"):
                call = stack.wait_call(record["call_uuid"])
                checks.equal(call.get("job_id"), job_id,
                             f"job_id on the call record of {job_id}")
                checks.equal(call.get("direction"), "outbound",
                             "direction on the call record")
            else:
                checks.check(False, f"job {job_id} has no call_uuid")
        checks.check(admin_id in jobs, "the admin job id has a record")
        checks.check(cli_id in jobs, "the CLI job id has a record")
        sources = sorted(j.get("source", "") for j in jobs.values())
        checks.equal(sources, ["admin", "cli", "queue"], "job sources")
        checks.equal(ctx.api.placed, Counter({number(i): 1
                                              for i in (1, 2, 3)}),
                     "calls placed per number")
        body = ctx.api.bodies[0]
        checks.equal(body["event_url"],
                     [f"http://127.0.0.1:{stack.callhook.public_port}"
                      "/call_events"], "event_url sent to the API")
        check_processing_empty(checks, stack)
        checks.check("****0001" in stack.callhook.log() and
                     "14155550001" not in stack.callhook.log(),
                     "logs show only the last four digits of numbers")
    finally:
        stack.stop(checks)


def scenario_admin_auth(checks, ctx):
    """POST /calls: 401 without or with a wrong token, 400 with the reason,
    and an idempotency key that returns the first job's id."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key)
    try:
        resp = stack.post_call(text_job(10), token=None)
        checks.equal(resp.status, 401, "POST /calls without a token")
        checks.equal(resp.headers.get("www-authenticate"), "Bearer",
                     "WWW-Authenticate on 401")
        resp = stack.post_call(text_job(10), token=ADMIN_TOKEN + "x")
        checks.equal(resp.status, 401, "POST /calls with a wrong token")
        resp = stack.post_call({"to": "14155550010", "from": FROM})
        checks.equal(resp.status, 400, "POST /calls without content")
        checks.check("exactly one of" in resp.body.decode(),
                     f"400 names the missing field: {resp.body!r}")
        resp = stack.post_call(text_job(10, id="mine"))
        checks.equal(resp.status, 400, "POST /calls with an id")
        resp = stack.post_call("{not json")
        checks.equal(resp.status, 400, "POST /calls with broken JSON")

        first = stack.post_call(text_job(11, idempotency_key="order-11"))
        second = stack.post_call(text_job(11, idempotency_key="order-11"))
        checks.equal(first.status, 202, "first idempotent POST")
        checks.equal(second.status, 202, "repeated idempotent POST")
        checks.equal(second.json(), first.json(), "repeated POST job id")
        stack.wait_final(1)
        time.sleep(0.5)
        checks.equal(ctx.api.requests[number(11)], 1,
                     "requests for an idempotent job posted twice")
        checks.equal(ctx.api.requests[number(10)], 0,
                     "requests for rejected jobs")
        checks.equal(len(stack.jobs()), 1, "job records")
    finally:
        stack.stop(checks)


def scenario_admin_disabled(checks, ctx):
    """Without --admin-token, POST /calls gets 403 naming the option."""
    callhook = Callhook(ctx.redis.url(), ["--spool-dir", ""],
                        env=NO_PROXY_ENV).start()
    try:
        client = callhook.admin()
        resp = client.request("POST", "/calls", json.dumps(text_job(12)),
                              {"Content-Type": "application/json"})
        client.close()
        checks.equal(resp.status, 403, "POST /calls without --admin-token")
        checks.check("--admin-token" in resp.body.decode(),
                     f"403 names --admin-token: {resp.body!r}")
        checks.check("dialer off" in callhook.log(),
                     "startup logs that the dialer is off")
    finally:
        callhook.check_clean_exit(checks)


def scenario_bad_jobs(checks, ctx):
    """Invalid jobs from the queue and the CLI never reach the API."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key)
    try:
        bad = ["{oops", json.dumps({"to": "CALL-ME", "from": FROM,
                                     "text": "x"}),
               json.dumps({"to": number(20), "from": FROM, "text": "x",
                           "colour": "red"}),
               json.dumps([1, 2])]
        for text in bad:
            stack.push(text)

        def failed_entries():
            n = stack.db.command("LLEN", "dial:failed")
            return n if n >= len(bad) else None

        wait_until(failed_entries, 15, what="entries in dial:failed")
        entries = [json.loads(e) for e in
                   stack.db.command("LRANGE", "dial:failed", 0, -1)]
        errors = sorted(e["error"] for e in entries)
        checks.check(any("not valid JSON" in e for e in errors),
                     f"error for broken JSON: {errors}")
        checks.check(any('"to" is not a valid phone number' in e
                         for e in errors),
                     f"error for a bad number: {errors}")
        checks.check(any('unknown field "colour"' in e for e in errors),
                     f"error for an unknown field: {errors}")
        checks.check(any(e.get("job") == [1, 2] for e in entries),
                     "the failed entry keeps the job as JSON")
        cli = subprocess.run(
            [callhook_binary(), "dial", "--to", number(21), "--from", FROM,
             "--text", "x", "--ringing-timer", "500",
             "--redis", ctx.redis.url()],
            capture_output=True, text=True, timeout=scaled(30),
            env=callhook_env(NO_PROXY_ENV))
        checks.equal(cli.returncode, 2, "callhook dial exit status for an "
                                        "invalid job")
        checks.check('"ringing_timer" must be' in cli.stderr,
                     f"callhook dial names the field: {cli.stderr!r}")
        check_processing_empty(checks, stack)
        checks.equal(sum(ctx.api.requests.values()), 0,
                     "requests that reached the API")
        checks.equal(stack.db.command("LLEN", "dial:queue"), 0,
                     "dial:queue length")
    finally:
        stack.stop(checks)


def scenario_rejections(checks, ctx):
    """401 and 400 end the job failed after one request; 503 is retried."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key)
    try:
        ctx.api.push_mode(("status", 401))
        stack.push(text_job(30))
        jobs = stack.wait_final(1)
        record = next(iter(jobs.values()))
        checks.equal(record.get("state"), "failed", "state after 401")
        checks.check("HTTP 401" in record.get("last_error", ""),
                     f"last_error after 401: {record.get('last_error')}")
        checks.equal(record.get("attempts"), "1", "attempts after 401")
        stack.callhook.wait_for_log(r"check that --private-key")

        ctx.api.push_mode(("status", 400))
        stack.push(text_job(31))
        jobs = stack.wait_final(2)
        record = [j for j in jobs.values() if number(31) in j["job"]][0]
        checks.equal(record.get("state"), "failed", "state after 400")
        checks.equal(record.get("last_error"),
                     f"HTTP 400: Injected: injected status for {number(31)}",
                     "last_error after 400 (title and detail)")
        log = stack.callhook.log()
        checks.check(number(31) not in log and "for ****0031" in log,
                     "the log masks a number quoted by the API")

        ctx.api.push_mode(("status", 503), 2)
        stack.push(text_job(32))
        jobs = stack.wait_final(3, timeout=30)
        record = [j for j in jobs.values() if number(32) in j["job"]][0]
        checks.equal(record.get("state"), "placed", "state after 2 x 503")
        checks.equal(record.get("attempts"), "3", "attempts after 2 x 503")
        checks.equal(ctx.api.requests[number(30)], 1, "requests after 401")
        checks.equal(ctx.api.requests[number(31)], 1, "requests after 400")
        checks.equal(ctx.api.requests[number(32)], 3, "requests after 503")
        check_processing_empty(checks, stack)
    finally:
        stack.stop(checks)


def scenario_ambiguous(checks, ctx):
    """500 after placing, a dropped connection and a stalled request end
    unknown, and the API sees each number once."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key,
                   extra=["--dial-timeout", "1500", "--dial-rate", "20"])
    try:
        # One call first, so the next requests can reuse its connection.
        stack.push(text_job(40))
        stack.wait_final(1)
        for mode, i in ((("status_after_place", 500), 41),
                        (("status_after_place", 502), 42),
                        (("close",), 43), (("stall",), 44),
                        (("status_after_place", 504), 45)):
            ctx.api.push_mode(mode)
            stack.push(text_job(i))
            stack.wait_final(i - 39, timeout=20)
        jobs = stack.jobs()
        for i in range(41, 46):
            record = [j for j in jobs.values() if number(i) in j["job"]][0]
            checks.equal(record.get("state"), "unknown",
                         f"state of job {i}")
            checks.equal(ctx.api.requests[number(i)], 1,
                         f"requests for number {i}")
            checks.check(record.get("last_error"),
                         f"job {i} has a last_error")
        check_processing_empty(checks, stack)
        check_no_double_calls(checks, ctx.api)
    finally:
        stack.stop(checks)


def scenario_storm(checks, ctx):
    """20 jobs at --dial-rate 10 against an API that takes 2 calls/s: all
    placed, and never more than 2 accepted within one second."""
    ctx.api.reset(rate=2)
    stack = Dialer(ctx.redis, ctx.api, ctx.key,
                   extra=["--dial-rate", "10", "--dial-concurrency", "20"])
    try:
        for i in range(20):
            stack.push(text_job(100 + i))
        jobs = stack.wait_final(20, timeout=120)
        states = Counter(j.get("state") for j in jobs.values())
        checks.equal(states, Counter({"placed": 20}), "outcomes")
        checks.check(ctx.api.statuses[429] > 0, "the API answered 429")
        checks.check(ctx.api.max_placed_per_second() <= 2,
                     f"calls placed in one second: "
                     f"{ctx.api.max_placed_per_second()}")
        check_no_double_calls(checks, ctx.api)
        stack.callhook.wait_for_log(r"pacing cut to ")
        check_processing_empty(checks, stack)
    finally:
        stack.stop(checks)
        ctx.api.reset()


def scenario_sigkill(checks, ctx):
    """SIGKILL with requests in flight: after a restart every job ends
    exactly once, the stalled ones unknown, and nobody is called twice."""
    # The restarted process waits for the killed one's lock to expire,
    # then for its requests to pass --dial-timeout plus a margin.
    extra = ["--dial-rate", "20", "--dial-concurrency", "4",
             "--dial-timeout", "2000"]
    stack = Dialer(ctx.redis, ctx.api, ctx.key, extra=extra)
    ctx.api.push_mode(("stall",), 4)
    for i in range(10):
        stack.push(text_job(200 + i))

    def stalled():
        return sum(ctx.api.requests.values()) >= 4

    wait_until(stalled, 15, what="4 stalled requests")
    time.sleep(0.2)
    stack.callhook.proc.kill()
    stack.callhook.proc.wait(timeout=10)
    ctx.api.release.set()
    in_flight = [j for j in stack.jobs().values()
                 if j.get("state") == "in_flight"]
    checks.equal(len(in_flight), 4, "jobs in_flight at the kill")

    again = Dialer(ctx.redis, ctx.api, ctx.key, extra=extra,
                   workdir=stack.callhook.workdir)
    try:
        jobs = again.wait_final(10, timeout=60)
        states = Counter(j.get("state") for j in jobs.values())
        checks.equal(states, Counter({"placed": 6, "unknown": 4}),
                     "outcomes after the restart")
        for i in range(10):
            checks.equal(ctx.api.requests[number(200 + i)], 1,
                         f"requests for number {200 + i}")
        check_no_double_calls(checks, ctx.api)
        check_processing_empty(checks, again)
        checks.equal(again.db.command("LLEN", "dial:queue"), 0,
                     "dial:queue length")
        again.callhook.wait_for_log(r"checking \d+ dial jobs in "
                                    r"dial:processing")
    finally:
        again.stop(checks)
        stack.db.close()


def webhook_latencies(callhook, count):
    client = callhook.public()
    latencies = []
    try:
        for i in range(count):
            event = {"uuid": f"lat-{uuid.uuid4()}", "status": "ringing",
                     "timestamp": "2026-12-04T10:00:00.000Z"}
            start = time.monotonic()
            resp = client.post("/call_events", json.dumps(event))
            latencies.append(time.monotonic() - start)
            if resp.status != 200:
                raise AssertionError(f"webhook got {resp.status}")
    finally:
        client.close()
    return sorted(latencies)


def scenario_stalled_api(checks, ctx):
    """Requests stalled at the API do not delay webhook handling."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key,
                   extra=["--dial-timeout", "4000", "--dial-rate", "20"])
    try:
        ctx.api.push_mode(("stall",), 5)
        for i in range(5):
            stack.push(text_job(300 + i))
        wait_until(lambda: sum(ctx.api.requests.values()) >= 5, 15,
                   what="5 stalled requests")
        latencies = webhook_latencies(stack.callhook, 50)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        checks.check(p99 < scaled(0.2),
                     f"webhook p99 with stalled API requests: {p99:.3f} s")
        jobs = stack.wait_final(5, timeout=20)
        checks.equal(Counter(j.get("state") for j in jobs.values()),
                     Counter({"unknown": 5}), "outcomes of stalled requests")
    finally:
        ctx.api.release.set()
        stack.stop(checks)


class StallingDns:
    """A UDP listener on port 53 of a loopback address that never answers."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.queries = 0
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def dns_namespace_prefix(resolv_conf):
    """Return a command prefix that runs callhook with resolv_conf as
    /etc/resolv.conf, or None when this machine cannot do that."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         'mount --bind "$0" /etc/resolv.conf && cat /etc/resolv.conf',
         str(resolv_conf)], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or probe.stdout != resolv_conf.read_text():
        return None
    # The && chain starts callhook only once the bind mount is in place,
    # so no query can go to the machine's own resolver.
    return ["unshare", "-m", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv_conf)]


def scenario_stalled_dns(checks, ctx):
    """A DNS server that never answers does not delay webhook handling,
    neither while libcurl's resolver waits nor when the request times out
    with the lookup still running."""
    address = "127.0.0.77"
    try:
        dns = StallingDns(address)
    except OSError as exc:
        print(f"SKIP stalled DNS: cannot bind {address}:53: {exc}")
        return
    workdir = make_temp_dir("callhook-dns-")
    resolv_conf = workdir / "resolv.conf"
    # The lookup outlives the 1.5 s connect timeout by 3.5 s.
    resolv_conf.write_text(f"nameserver {address}\n"
                           "options timeout:5 attempts:1\n")
    prefix = dns_namespace_prefix(resolv_conf)
    if prefix is None:
        dns.close()
        print("SKIP stalled DNS: needs root and unshare to give callhook "
              "its own /etc/resolv.conf")
        return
    stack = Dialer(ctx.redis, ctx.api, ctx.key, command_prefix=prefix,
                   workdir=workdir,
                   api_url=f"http://api.dialer-stall.test:{ctx.api.port}",
                   extra=["--dial-connect-timeout", "1500",
                          "--dial-max-attempts", "1"])
    try:
        checks.check("resolver=threaded" in stack.callhook.log() or
                     "resolver=c-ares" in stack.callhook.log(),
                     "startup logs an asynchronous resolver")
        stack.push(text_job(400))
        wait_until(lambda: dns.queries > 0, 10, what="a DNS query")
        started = time.monotonic()
        latencies = []
        while time.monotonic() - started < 5.5:
            latencies += webhook_latencies(stack.callhook, 10)
        worst = max(latencies)
        checks.check(worst < scaled(0.2),
                     f"slowest of {len(latencies)} webhooks while DNS "
                     f"stalls: {worst:.3f} s")
        jobs = stack.wait_final(1, timeout=20)
        record = next(iter(jobs.values()))
        checks.equal(record.get("state"), "failed",
                     "state when the API host never resolves")
        checks.check("request not sent" in record.get("last_error", ""),
                     f"last_error: {record.get('last_error')}")
        checks.equal(sum(ctx.api.requests.values()), 0,
                     "requests that reached the API")
    finally:
        stack.stop(checks)
        dns.close()


def scenario_sigterm_drains(checks, ctx):
    """SIGTERM lets a slow request finish and store its outcome."""
    stack = Dialer(ctx.redis, ctx.api, ctx.key,
                   extra=["--dial-timeout", "1000"])
    try:
        ctx.api.push_mode(("stall",))
        stack.push(text_job(500))
        wait_until(lambda: ctx.api.requests[number(500)] == 1, 10,
                   what="the stalled request")
    finally:
        stack.stop(checks)
    record = list(stack.jobs().values())[0]
    checks.equal(record.get("state"), "unknown",
                 "outcome stored during shutdown")
    checks.check("dialer draining" in stack.callhook.log(),
                 "shutdown logs the drain")
    ctx.api.release.set()


def scenario_bad_key(checks, ctx):
    """An unreadable or invalid key stops startup with the option named."""
    junk = make_temp_dir("callhook-key-") / "junk.pem"
    junk.write_text("not a key\n")
    junk.chmod(0o600)
    for key, needle in ((junk, "invalid --private-key"),
                        (Path("/nonexistent/key.pem"),
                         "cannot read --private-key")):
        result = subprocess.run(
            [callhook_binary(), "--redis", ctx.redis.url(),
             "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--application-id", APPLICATION_ID, "--private-key", str(key),
             "--api-url", ctx.api.url],
            capture_output=True, text=True, timeout=scaled(30),
            env=callhook_env(NO_PROXY_ENV))
        checks.check(result.returncode != 0,
                     f"exit status with key {key}: {result.returncode}")
        checks.check(needle in result.stderr,
                     f"message for key {key}: {result.stderr[-300:]!r}")
    result = subprocess.run(
        [callhook_binary(), "--redis", ctx.redis.url(),
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
         "--application-id", APPLICATION_ID, "--api-url", ctx.api.url],
        capture_output=True, text=True, timeout=scaled(30),
        env=callhook_env(NO_PROXY_ENV))
    checks.check(result.returncode != 0 and
                 "private key is missing" in result.stderr,
                 f"an application id without a key: {result.stderr[-300:]!r}")


def scenario_two_processes(checks, ctx):
    """Two callhook processes on one Redis: one dials, the other stands
    by and takes over when the first stops."""
    first = Dialer(ctx.redis, ctx.api, ctx.key,
                   extra=["--dial-rate", "5"])
    first.callhook.wait_for_log(r"dialer active")
    second = Dialer(ctx.redis, ctx.api, ctx.key,
                    extra=["--dial-rate", "5"])
    try:
        second.callhook.wait_for_log(r"dialer standby")
        for i in range(6):
            first.push(text_job(600 + i))
        jobs = first.wait_final(6, timeout=30)
        checks.equal(Counter(j.get("state") for j in jobs.values()),
                     Counter({"placed": 6}), "outcomes with two processes")
        checks.check("dial job" not in "\n".join(
                         line for line in second.callhook.log_lines()
                         if "placed" in line),
                     "the standby process placed nothing")
        checks.check(ctx.api.max_placed_per_second() <= 6,
                     f"calls placed in one second: "
                     f"{ctx.api.max_placed_per_second()}")
        first.stop(checks)
        second.callhook.wait_for_log(r"dialer active", timeout=15)
        for i in range(3):
            second.push(text_job(610 + i))
        jobs = second.wait_final(9, timeout=30)
        checks.equal(Counter(j.get("state") for j in jobs.values()),
                     Counter({"placed": 9}), "outcomes after the takeover")
        check_no_double_calls(checks, ctx.api)
        check_processing_empty(checks, second)
    finally:
        second.stop(checks)


class ExternalFakeApi:
    """The fakeapi program of test/fakeapi, when FAKEAPI_BIN names it."""

    def __init__(self, binary, public_key, workdir, rate):
        self.log_path = workdir / "fakeapi.log"
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--public-key",
             str(public_key), "--application-id", APPLICATION_ID,
             "--rate", str(rate), "--retry-after", "1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"))

        def listening():
            match = re.search(r"fakeapi listening on 127\.0\.0\.1:(\d+)",
                              self.log_path.read_text(errors="replace"))
            if match is None and self.proc.poll() is not None:
                raise RuntimeError("fakeapi exited: " +
                                   self.log_path.read_text())
            return match

        self.port = int(wait_until(listening, 10,
                                   what="fakeapi listening").group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def control(self, method, path, body=None):
        client = HttpClient("127.0.0.1", self.port)
        try:
            resp = client.request(method, path, json.dumps(body)
                                  if body is not None else None,
                                  {"Content-Type": "application/json"})
            return resp.json()
        finally:
            client.close()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=scaled(10))


def scenario_external_fakeapi(checks, ctx):
    """The dialer against test/fakeapi: its token and body checks accept
    every request, its rate limit holds, and ambiguous failures are not
    retried."""
    binary = os.environ.get("FAKEAPI_BIN")
    if not binary:
        print("SKIP external fakeapi: FAKEAPI_BIN is not set")
        return
    fake = ExternalFakeApi(binary, ctx.public, ctx.workdir, rate=2)
    stack = Dialer(ctx.redis, fake, ctx.key,
                   extra=["--dial-rate", "10", "--dial-timeout", "1500"])
    try:
        for i in range(8):
            stack.push(text_job(700 + i))
        stack.wait_final(8, timeout=60)
        for mode, i in (({"mode": "status_after_place", "status": 500}, 710),
                        ({"mode": "close"}, 711),
                        ({"mode": "stall"}, 712),
                        ({"mode": "status", "status": 400}, 713)):
            fake.control("POST", "/_fake/mode", mode)
            stack.push(text_job(i))
            stack.wait_final(9 + i - 710, timeout=20)
        stats = fake.control("GET", "/_fake/stats")
        jobs = stack.jobs()
        state = {json.loads(j["job"])["to"]: j.get("state")
                 for j in jobs.values()}
        checks.equal(Counter(state.values()),
                     Counter({"placed": 8, "unknown": 3, "failed": 1}),
                     "outcomes against fakeapi")
        checks.equal(state.get(number(713)), "failed", "state after 400")
        checks.equal(stats.get("calls_placed"), 9, "calls fakeapi placed")
        twice = {n: c for n, c in stats.get("destinations", {}).items()
                 if c > 1}
        checks.equal(twice, {}, "numbers fakeapi placed more than once")
        checks.check(stats.get("max_calls_per_second", 99) <= 2,
                     f"fakeapi max calls per second: "
                     f"{stats.get('max_calls_per_second')}")
        checks.equal(stats.get("responses", {}).get("401"), None,
                     "tokens fakeapi rejected")
        placed = [j for j in jobs.values() if j.get("state") == "placed"]
        for record in placed:
            stack.wait_call(record["call_uuid"])
        check_processing_empty(checks, stack)
    finally:
        stack.stop(checks)
        fake.stop()


SCENARIOS = [
    scenario_bad_key,
    scenario_admin_disabled,
    scenario_each_source,
    scenario_admin_auth,
    scenario_bad_jobs,
    scenario_rejections,
    scenario_ambiguous,
    scenario_sigterm_drains,
    scenario_stalled_api,
    scenario_stalled_dns,
    scenario_sigkill,
    scenario_two_processes,
    scenario_storm,
    scenario_external_fakeapi,
]


class Context:
    pass


def main(checks):
    ctx = Context()
    workdir = make_temp_dir("callhook-dialer-")
    ctx.workdir = workdir
    ctx.key, ctx.public = make_key(workdir)
    ctx.redis = RedisServer().start()
    ctx.api = FakeVoiceApi(ctx.public, APPLICATION_ID)
    only = os.environ.get("DIALER_SCENARIO")
    try:
        for scenario in SCENARIOS:
            if only and only not in scenario.__name__:
                continue
            ctx.redis.client().flushall()
            ctx.api.reset()
            before = checks.failed
            started = time.monotonic()
            scenario(checks, ctx)
            print(f"{scenario.__name__}: "
                  f"{'ok' if checks.failed == before else 'FAILED'} in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
    finally:
        ctx.api.close()
        ctx.redis.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    run_test("dialer", main)
