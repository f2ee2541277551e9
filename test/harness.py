"""Process and protocol helpers for the callhook integration tests.

The tests run the real callhook binary against a real redis-server, both
started here on free loopback ports inside a temporary directory, and both
killed when the test process exits, whether it passes, fails or is
interrupted.

Environment variables:
  CALLHOOK_BIN            path of the callhook binary (required)
  CALLHOOK_VALGRIND=1     run callhook under valgrind; errors fail the test
  CALLHOOK_TIMEOUT_SCALE  factor applied to every wait (default 1, or 10
                          under valgrind)
  CALLHOOK_TEST_KEEP=1    keep the temporary directory with the logs
"""

import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent
FIXTURES_DIR = TEST_DIR / "fixtures"

VALGRIND = os.environ.get("CALLHOOK_VALGRIND", "") not in ("", "0")
VALGRIND_ERROR_EXIT = 99
TIMEOUT_SCALE = float(
    os.environ.get("CALLHOOK_TIMEOUT_SCALE", "10" if VALGRIND else "1"))

# Report lines that a sanitizer writes to stderr, or valgrind to its log.
SANITIZER_PATTERNS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "Invalid read of size",
    "Invalid write of size",
    "definitely lost in",
)

_processes = []
_temp_dirs = []


def scaled(seconds):
    """Return a wait limit in seconds, stretched for slow runs."""
    return seconds * TIMEOUT_SCALE


def _cleanup():
    for proc in _processes:
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
    keep = os.environ.get("CALLHOOK_TEST_KEEP", "") not in ("", "0")
    for path in _temp_dirs:
        if keep:
            print(f"kept test directory {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _on_sigterm(signum, frame):
    # sys.exit runs the atexit handler, which kills the servers.
    sys.exit(128 + signum)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_sigterm)


def make_temp_dir(prefix="callhook-it-"):
    """Create a directory that is removed when the test process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _temp_dirs.append(path)
    return path


def free_port(host="127.0.0.1"):
    """Return a TCP port that was free on host a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate until it returns a true value, and return that value.

    Raises TimeoutError after timeout seconds (scaled).
    """
    deadline = time.monotonic() + scaled(timeout)
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {scaled(timeout):.0f} s "
                               f"waiting for {what}")
        time.sleep(interval)


# ---- checks ---------------------------------------------------------------


class Checks:
    """Soft assertions: each failed check is printed and the run goes on.

    finish() turns the tally into the process exit status.
    """

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, condition, message):
        if condition:
            self.passed += 1
            return True
        self.failed += 1
        print(f"FAIL: {message}", flush=True)
        return False

    def equal(self, actual, expected, what):
        return self.check(actual == expected,
                          f"{what}: expected {expected!r}, got {actual!r}")

    def finish(self):
        print(f"{self.name}: {self.passed} checks passed, "
              f"{self.failed} failed", flush=True)
        return 1 if self.failed else 0


def run_test(name, body):
    """Run body(checks) and exit with its result.

    An exception counts as one more failed check, with its traceback.
    """
    checks = Checks(name)
    try:
        body(checks)
    except Exception:  # noqa: BLE001 - any error must fail the test
        traceback.print_exc()
        checks.check(False, "the test raised an exception (traceback above)")
    sys.exit(checks.finish())


# ---- Redis ----------------------------------------------------------------


class RedisError(Exception):
    """An error reply from Redis."""


class RedisClient:
    """A minimal RESP2 client over one blocking socket."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port),
                                             timeout=scaled(timeout))
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    @staticmethod
    def _encode(args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            if isinstance(arg, str):
                arg = arg.encode()
            elif isinstance(arg, int):
                arg = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        return b"".join(parts)

    def _read_reply(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self._read_reply() for _ in range(count)]
        raise ConnectionError(f"unexpected RESP reply {line!r}")

    def pipeline(self, commands):
        """Send several commands at once and return their replies in order.

        Error replies come back as RedisError objects, not raised.
        """
        self.sock.sendall(b"".join(self._encode(c) for c in commands))
        return [self._read_reply() for _ in commands]

    def command(self, *args):
        reply = self.pipeline([args])[0]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def hgetall(self, key):
        flat = self.command("HGETALL", key)
        return {flat[i].decode(): flat[i + 1].decode()
                for i in range(0, len(flat), 2)}

    def dbsize(self):
        return self.command("DBSIZE")

    def flushall(self):
        self.command("FLUSHALL")

    def keys(self):
        return sorted(k.decode() for k in self.command("KEYS", "*"))


class RedisServer:
    """A redis-server child process on a loopback port.

    kill() ends it with SIGKILL and restart() starts it again on the same
    port, which is how the tests simulate an outage.
    """

    def __init__(self, workdir=None, extra_args=(), persistent=False):
        self.workdir = Path(workdir or make_temp_dir("callhook-it-redis-"))
        self.extra_args = list(extra_args)
        self.persistent = persistent
        self.port = None
        self.proc = None
        self.log_path = self.workdir / "redis.log"

    def _command(self):
        cmd = ["redis-server", "--port", str(self.port),
               "--bind", "127.0.0.1", "--dir", str(self.workdir),
               "--logfile", str(self.log_path), "--daemonize", "no",
               "--protected-mode", "yes"]
        if not self.persistent:
            cmd += ["--save", "", "--appendonly", "no"]
        return cmd + self.extra_args

    def start(self, timeout=15):
        # Another process may take the free port before redis binds it, so
        # a fresh port is tried a few times unless restarting on a fixed one.
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port()
            self.proc = subprocess.Popen(self._command(),
                                         stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            _processes.append(self.proc)
            if self._wait_ping(timeout):
                return self
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n"
                           + self.log_tail())

    def _wait_ping(self, timeout):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                client = RedisClient(self.port, timeout=2)
                try:
                    if client.command("PING") == "PONG":
                        return True
                finally:
                    client.close()
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        return False

    def log_tail(self, lines=20):
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no redis log)"
        return "\n".join(text.splitlines()[-lines:])

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self):
        return RedisClient(self.port)

    def kill(self):
        """End redis-server with SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, timeout=15):
        """Start redis-server again on the same port after kill()."""
        self.kill()
        return self.start(timeout)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ---- callhook -------------------------------------------------------------


def callhook_binary():
    path = os.environ.get("CALLHOOK_BIN")
    if not path:
        raise RuntimeError("CALLHOOK_BIN is not set: point it at the callhook "
                           "binary, e.g. CALLHOOK_BIN=build/src/callhook")
    # callhook runs in a temporary directory, so a relative path must be
    # resolved against the directory the test started in.
    return str(Path(path).resolve())


def callhook_env(extra=None):
    """Return the environment for callhook, without CALLHOOK_* settings.

    Settings inherited from the shell would change defaults that the tests
    rely on. CALLHOOK_BIN and the test's own variables are not callhook
    options either.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CALLHOOK_") and k != "REDIS_URL"}
    env.update(extra or {})
    return env


def valgrind_prefix(log_path):
    return ["valgrind", "--quiet", "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            f"--error-exitcode={VALGRIND_ERROR_EXIT}",
            f"--log-file={log_path}"]


LISTENING_RE = re.compile(r" listening public=(\S+):(\d+) admin=(\S+):(\d+) ")


class Callhook:
    """A callhook child process with its stderr captured to a file."""

    def __init__(self, redis_url, args=(), workdir=None, env=None):
        self.workdir = Path(workdir or make_temp_dir("callhook-it-server-"))
        self.redis_url = redis_url
        self.args = list(args)
        self.env = env
        self.proc = None
        self.stop_signal_sent = False
        self.public_port = None
        self.admin_port = None
        self.public_host = "127.0.0.1"
        self.admin_host = "127.0.0.1"
        self.stderr_path = self.workdir / f"callhook-{id(self)}.log"
        self.valgrind_log = self.workdir / f"valgrind-{id(self)}.log"

    def command(self):
        cmd = [callhook_binary()]
        if not any(a == "--listen" or a.startswith("--listen=")
                   for a in self.args):
            cmd += ["--listen", "127.0.0.1:0"]
        if not any(a == "--admin-listen" or a.startswith("--admin-listen=")
                   for a in self.args):
            cmd += ["--admin-listen", "127.0.0.1:0"]
        if self.redis_url is not None:
            cmd += ["--redis", self.redis_url]
        cmd += self.args
        if VALGRIND:
            cmd = valgrind_prefix(self.valgrind_log) + cmd
        return cmd

    def start(self, wait_ready=True, timeout=20):
        """Start callhook and wait for its listening line.

        With wait_ready, also poll the admin /readyz until it returns 200.
        """
        self._stderr = open(self.stderr_path, "wb")
        # Relative paths in callhook's defaults land in the temporary
        # directory, never in the source or build tree.
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, cwd=self.workdir,
                                     env=callhook_env(self.env))
        _processes.append(self.proc)

        def listening():
            match = LISTENING_RE.search(self.log())
            if match is None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"callhook exited with {self.proc.returncode} before "
                    f"listening:\n{self.log()}")
            return match

        match = wait_until(listening, timeout, what="the listening line")
        self.public_host, self.public_port = match.group(1), int(match.group(2))
        self.admin_host, self.admin_port = match.group(3), int(match.group(4))
        self.public_host = self.public_host.strip("[]")
        self.admin_host = self.admin_host.strip("[]")
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20):
        def ready():
            try:
                return self.admin().request("GET", "/readyz").status == 200
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.05, what="/readyz 200")

    def log(self):
        """Return everything callhook wrote to stderr so far."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def wait_for_log(self, pattern, timeout=20, count=1):
        """Wait until count lines match the regular expression pattern."""
        regex = re.compile(pattern)

        def found():
            matches = [line for line in self.log_lines() if regex.search(line)]
            return matches if len(matches) >= count else None

        return wait_until(found, timeout, what=f"log line /{pattern}/")

    def public(self, timeout=30):
        return HttpClient(self.public_host, self.public_port, timeout)

    def admin(self, timeout=30):
        return HttpClient(self.admin_host, self.admin_port, timeout)

    def send_signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stop_signal_sent = True
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        """Wait for the process to exit and return its exit status."""
        try:
            return self.proc.wait(timeout=scaled(timeout))
        finally:
            if self.proc.poll() is not None:
                self._stderr.close()

    def stop(self, timeout=30):
        """Send SIGTERM, wait for the exit and return the exit status.

        No SIGTERM is sent when the test already sent SIGTERM or SIGINT,
        because a second one would end a process that is still cleaning
        up. A process that does not exit in time is killed and gets None.
        """
        if self.proc.poll() is None and not self.stop_signal_sent:
            self.send_signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self._stderr.close()
            return None

    def sanitizer_reports(self):
        text = self.log()
        if VALGRIND:
            try:
                text += self.valgrind_log.read_text(errors="replace")
            except OSError:
                pass
        return [p for p in SANITIZER_PATTERNS if p in text]

    def check_clean_exit(self, checks, expected=0, timeout=30):
        """Stop callhook and check its exit status and the sanitizer output."""
        rc = self.stop(timeout)
        ok = checks.equal(rc, expected, "callhook exit status after SIGTERM")
        ok &= checks.check(not self.sanitizer_reports(),
                           f"sanitizer or valgrind reports in the callhook "
                           f"log: {self.sanitizer_reports()}")
        if not ok:
            self.print_log_tail()
        return ok

    def print_log_tail(self, lines=40):
        print(f"--- last {lines} lines of {self.stderr_path}:")
        for line in self.log_lines()[-lines:]:
            print(f"    {line}")
        if VALGRIND and self.valgrind_log.exists():
            print(f"--- valgrind log {self.valgrind_log}:")
            print(self.valgrind_log.read_text(errors="replace")[-4000:])


def run_callhook(args, timeout=30, env=None):
    """Run callhook to completion (for --help and invalid options).

    Returns the CompletedProcess with text stdout and stderr.
    """
    cmd = [callhook_binary()] + list(args)
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace",
                          timeout=scaled(timeout), env=callhook_env(env),
                          cwd=make_temp_dir())


class Stack:
    """A Redis server and a callhook connected to it, started together."""

    def __init__(self, callhook_args=(), redis_args=(), wait_ready=True):
        self.redis = RedisServer(extra_args=redis_args).start()
        self.callhook = Callhook(self.redis.url(), callhook_args,
                                 workdir=self.redis.workdir)
        self.callhook.start(wait_ready=wait_ready)
        self.db = self.redis.client()


# ---- HTTP -----------------------------------------------------------------


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-cased names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class HttpClient:
    """A keep-alive HTTP/1.1 client on top of http.client.

    It opens a new connection whenever the server closed the last one.
    """

    def __init__(self, host, port, timeout=30):
        self.host = host
        self.port = port
        self.timeout = scaled(timeout)
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, str):
            body = body.encode()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port,
                                                   timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            resp = self.conn.getresponse()
            data = resp.read()
        except Exception:
            self.close()
            raise
        result = Response(resp.status,
                          {k.lower(): v for k, v in resp.getheaders()}, data)
        if resp.will_close:
            self.close()
        return result

    def get(self, path, headers=None):
        return self.request("GET", path, headers=headers)

    def post(self, path, body, content_type="application/json",
             headers=None):
        all_headers = {"Content-Type": content_type}
        all_headers.update(headers or {})
        return self.request("POST", path, body=body, headers=all_headers)


def raw_exchange(host, port, data, timeout=30, half_close=True):
    """Send raw bytes on a new connection and return all bytes received
    until the server closes the connection or the timeout expires.

    A server that closes early may reset the connection while data is
    still being sent; what it replied before that is still returned.
    """
    chunks = []
    with socket.create_connection((host, port), timeout=scaled(timeout)) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (socket.timeout, ConnectionResetError):
            pass
    return b"".join(chunks)


def run_in_thread(fn, *args):
    """Start fn(*args) in a daemon thread.

    The returned handle's join() returns the result or raises the error.
    """
    result = {}

    def target():
        try:
            result["value"] = fn(*args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    class Handle:
        def join(self, timeout=60):
            thread.join(scaled(timeout))
            if thread.is_alive():
                raise TimeoutError("worker thread did not finish")
            if "error" in result:
                raise result["error"]
            return result.get("value")

    return Handle()
