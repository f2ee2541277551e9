"""Fault injection: no event acknowledged with 200 is ever lost.

Each scenario runs a real redis-server (AOF with fsync always, so what
Redis acknowledged survives its own restart) and a real callhook with a
spool, sends call events from several client threads, keeps a log of every
event that got a 200, breaks something while the load runs, and finally
checks that every acknowledged event is in its call's history in Redis.

Usage: test_reliability.py SCENARIO, where SCENARIO is one of
redis-kill, redis-stop, callhook-kill, callhook-term, spool-faults,
spool-damage, spool-removed.
"""

import json
import os
import signal
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

STATUSES = ["started", "ringing", "answered", "completed"]


def event_body(call, step):
    uuid = f"rel-{call:05d}-4a7c-4d9e-8b1f-3d5f7b9d1f4e"
    body = {
        "from": "14155550100",
        "to": "14155550123",
        "uuid": uuid,
        "conversation_uuid": f"CON-{uuid}",
        "direction": "outbound",
        "status": STATUSES[step],
        "timestamp": f"2026-12-04T10:00:{step:02d}.000Z",
    }
    return uuid, json.dumps(body, separators=(",", ":"))


class Load:
    """Client threads posting call lifecycles; logs every acknowledged one.

    Each thread owns a slice of the calls and sends their events in order.
    A failed or refused request is retried a few times, as Vonage would,
    but only a 200 goes into the acknowledged log.
    """

    def __init__(self, stack_ref, calls, threads=4, pause=0.002):
        self.stack_ref = stack_ref
        self.calls = calls
        self.threads = threads
        self.pause = pause
        self.acked = []  # (uuid, body)
        self.refused = 0
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.workers = []

    def _send(self, client_box, body):
        for _ in range(50):
            if self.stop.is_set():
                return None
            callhook = self.stack_ref()
            try:
                if client_box[0] is None or client_box[1] is not callhook:
                    client_box[0] = callhook.public(timeout=10)
                    client_box[1] = callhook
                resp = client_box[0].post("/call_events", body)
            except (OSError, TypeError, AttributeError):
                with self.lock:
                    self.errors += 1
                client_box[0] = None
                time.sleep(0.05)
                continue
            if resp.status == 200:
                return resp
            with self.lock:
                self.refused += 1
            time.sleep(0.05)
        return None

    def _worker(self, index):
        client_box = [None, None]
        for call in range(index, self.calls, self.threads):
            for step in range(len(STATUSES)):
                uuid, body = event_body(call, step)
                resp = self._send(client_box, body)
                if resp is not None:
                    with self.lock:
                        self.acked.append((uuid, body))
                time.sleep(self.pause)

    def start(self):
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def join(self, timeout=120):
        deadline = time.monotonic() + harness.scaled(timeout)
        for t in self.workers:
            t.join(max(0.1, deadline - time.monotonic()))
        self.stop.set()
        return all(not t.is_alive() for t in self.workers)

    def progress(self):
        with self.lock:
            return len(self.acked)


def missing_events(db, acked):
    """Return the acknowledged events absent from their call's history."""
    histories = {}
    missing = []
    for uuid, body in acked:
        if uuid not in histories:
            histories[uuid] = {entry.decode() for entry in db.command(
                "LRANGE", f"call:{{{uuid}}}:events", "0", "-1") or []}
        if body not in histories[uuid]:
            missing.append((uuid, body))
    return missing


def wait_all_stored(checks, redis, acked, timeout=60):
    db = redis.client()
    try:
        try:
            harness.wait_until(lambda: not missing_events(db, acked), timeout,
                               interval=0.2, what="every acked event in Redis")
        except TimeoutError:
            pass
        lost = missing_events(db, acked)
        checks.equal(len(lost), 0, f"acknowledged events missing from Redis "
                                   f"(of {len(acked)}; first: {lost[:2]})")
        finals = {}
        for uuid, body in acked:
            status = json.loads(body)["status"]
            if STATUSES.index(status) > STATUSES.index(finals.get(uuid,
                                                                  "started")):
                finals[uuid] = status
            finals.setdefault(uuid, status)
        # An event may be stored but its 200 lost (a client cut off by a
        # shutdown), so the status may be above the highest one acked,
        # never below.
        wrong = []
        for u, s in finals.items():
            stored = db.hgetall(f"call:{{{u}}}").get("status")
            if stored not in STATUSES or (STATUSES.index(stored) <
                                          STATUSES.index(s)):
                wrong.append((u, s, stored))
        checks.equal(wrong[:3], [], "calls whose status is below the "
                                    "highest acknowledged one")
    finally:
        db.close()


def start_stack(workdir, redis=None, extra=()):
    if redis is None:
        redis = harness.RedisServer(
            workdir=workdir, persistent=True,
            extra_args=["--appendonly", "yes", "--appendfsync", "always",
                        "--save", ""]).start()
    callhook = harness.Callhook(
        redis.url(), ["--spool-dir", str(workdir / "spool"),
                      "--redis-timeout", "500", "--shutdown-timeout", "5"]
        + list(extra), workdir=workdir)
    callhook.start(wait_ready=True)
    return redis, callhook


def scenario_redis_kill(checks):
    workdir = harness.make_temp_dir()
    redis, callhook = start_stack(workdir)
    load = Load(lambda: callhook, calls=200).start()
    harness.wait_until(lambda: load.progress() > 100, 30, what="load")
    redis.kill()
    time.sleep(1.5)
    checks.check(callhook.proc.poll() is None, "callhook alive after the "
                                               "Redis SIGKILL")
    redis.start()
    checks.check(load.join(), "the load finished")
    wait_all_stored(checks, redis, load.acked)
    checks.check(any("spooled" in line or "replayed" in line
                     for line in callhook.log_lines()),
                 "the outage went through the spool")
    callhook.check_clean_exit(checks)


def scenario_redis_stop(checks):
    workdir = harness.make_temp_dir()
    redis, callhook = start_stack(workdir)
    load = Load(lambda: callhook, calls=200).start()
    harness.wait_until(lambda: load.progress() > 100, 30, what="load")
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(3)
        # The event loop must keep serving while Redis is stalled.
        health = callhook.public(timeout=5).get("/healthz")
        checks.equal(health.status, 200, "/healthz while Redis is stopped")
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    checks.check(load.join(), "the load finished")
    wait_all_stored(checks, redis, load.acked)
    checks.check(any("sent no reply" in line for line in callhook.log_lines()),
                 "the stall was detected by the command timeout")
    callhook.check_clean_exit(checks)


def scenario_callhook_kill(checks):
    workdir = harness.make_temp_dir()
    redis = harness.RedisServer(workdir=workdir, persistent=True, extra_args=[
        "--appendonly", "yes", "--appendfsync", "always", "--save", ""])
    redis.start()
    # Redis is down while callhook runs, so every ack comes from the spool;
    # callhook is then killed and a new one must replay its spool.
    redis.kill()
    box = {}
    _, box["c"] = start_stack_no_ready(workdir, redis)
    load = Load(lambda: box["c"], calls=120).start()
    harness.wait_until(lambda: load.progress() > 60, 30, what="load")
    box["c"].proc.kill()
    box["c"].proc.wait(timeout=10)
    redis.start()
    _, box["c"] = start_stack(workdir, redis)
    checks.check(load.join(), "the load finished")
    wait_all_stored(checks, redis, load.acked)
    box["c"].check_clean_exit(checks)


def start_stack_no_ready(workdir, redis):
    callhook = harness.Callhook(
        redis.url(), ["--spool-dir", str(workdir / "spool"),
                      "--redis-timeout", "500"], workdir=workdir)
    callhook.start(wait_ready=False)
    return redis, callhook


def scenario_callhook_term(checks):
    workdir = harness.make_temp_dir()
    redis, callhook = start_stack(workdir)
    load = Load(lambda: callhook, calls=300, pause=0.0005).start()
    harness.wait_until(lambda: load.progress() > 100, 30, what="load")
    callhook.send_signal(signal.SIGTERM)
    rc = callhook.wait(timeout=20)
    checks.equal(rc, 0, "exit status after SIGTERM under load")
    checks.check(any("shutdown complete" in line
                     for line in callhook.log_lines()),
                 "shutdown line logged")
    load.stop.set()
    load.join(timeout=30)
    checks.check(not callhook.sanitizer_reports(), "no sanitizer reports")
    # Writes still waiting when --shutdown-timeout ran out were moved to
    # the spool and acknowledged from there; the next start replays them.
    _, restarted = start_stack(workdir, redis)
    wait_all_stored(checks, redis, list(load.acked))
    restarted.check_clean_exit(checks)


def scenario_spool_faults(checks):
    workdir = harness.make_temp_dir()
    redis, callhook = start_stack(workdir, extra=[
        "--spool-max-bytes", "65536"])
    client = callhook.public()
    redis.kill()
    spool = workdir / "spool"

    # The spool folder disappears: appends fail, webhooks get 503.
    moved = workdir / "spool-away"
    spool.rename(moved)
    _, body = event_body(9000, 0)
    resp = client.post("/call_events", body)
    checks.equal(resp.status, 503, "webhook status while the spool folder "
                                   "is gone")
    moved.rename(spool)
    time.sleep(1.2)  # the spool retries a failed folder after a second
    acked = []
    resp = client.post("/call_events", body)
    checks.equal(resp.status, 200, "webhook status once the folder is back")
    if resp.status == 200:
        acked.append((json.loads(body)["uuid"], body))

    # Fill the spool to its limit: 503 from then on, no crash.
    statuses = []
    for call in range(9001, 9400):
        uuid, body = event_body(call, 0)
        resp = client.post("/call_events", body)
        statuses.append(resp.status)
        if resp.status == 200:
            acked.append((uuid, body))
        if resp.status == 503:
            break
    checks.check(503 in statuses, f"a full spool answers 503 (saw "
                                  f"{sorted(set(statuses))})")
    checks.check(callhook.proc.poll() is None, "callhook alive with a full "
                                               "spool")
    checks.check(any("is full" in line for line in callhook.log_lines()),
                 "the full spool is logged")

    redis.start()
    wait_all_stored(checks, redis, acked)
    uuid, body = event_body(9500, 0)
    resp = client.post("/call_events", body)
    checks.equal(resp.status, 200, "webhook status after recovery")
    callhook.check_clean_exit(checks)


def scenario_spool_removed(checks):
    workdir = harness.make_temp_dir()
    redis, callhook = start_stack(workdir)
    client = callhook.public()
    redis.kill()
    spool = workdir / "spool"
    acked = []

    def send(call):
        uuid, body = event_body(call, 0)
        resp = client.post("/call_events", body)
        if resp.status == 200:
            acked.append((uuid, body))
        return resp.status

    for call in range(9600, 9650):
        send(call)
    checks.equal(len(acked), 50, "events spooled while Redis is down")

    # Someone deletes the whole spool folder while callhook writes to it:
    # what the open file held was acknowledged and must survive.
    for path in spool.iterdir():
        path.unlink()
    spool.rmdir()
    checks.equal(send(9650), 503, "webhook status with the folder gone")
    spool.mkdir()
    time.sleep(1.2)  # the spool retries a failed folder after a second
    checks.equal(send(9651), 200, "webhook status once the folder is back")
    checks.check(any("was removed while in use" in line
                     for line in callhook.log_lines()),
                 "the removal is logged")
    redis.start()
    wait_all_stored(checks, redis, acked)
    callhook.check_clean_exit(checks)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def spool_record(body, received_ms=1796400000000):
    payload = struct.pack("<BBBQB", 1, 0, 0, received_ms, 0) + body.encode()
    return (b"CHsp" + struct.pack("<II", len(payload), crc32c(payload))
            + payload)


def scenario_spool_damage(checks):
    workdir = harness.make_temp_dir()
    spool = workdir / "spool"
    spool.mkdir()
    good = []

    # File 1: three records, then a torn fourth (cut in the middle).
    data = b""
    for call in range(3):
        uuid, body = event_body(7000 + call, 0)
        data += spool_record(body)
        good.append((uuid, body))
    _, torn = event_body(7003, 0)
    data += spool_record(torn)[:30]
    (spool / "spool-0000000000000001.log").write_bytes(data)

    # File 2: a record with a flipped byte between two intact ones.
    data = b""
    uuid, body = event_body(7100, 0)
    data += spool_record(body)
    good.append((uuid, body))
    _, bad = event_body(7101, 0)
    damaged = bytearray(spool_record(bad))
    damaged[40] ^= 0xFF
    data += bytes(damaged)
    uuid, body = event_body(7102, 0)
    data += spool_record(body)
    good.append((uuid, body))
    (spool / "spool-0000000000000002.log").write_bytes(data)

    redis, callhook = start_stack(workdir)
    wait_all_stored(checks, redis, good)
    db = redis.client()
    checks.equal(db.command("EXISTS", "call:{rel-07003-4a7c-4d9e-8b1f-"
                                      "3d5f7b9d1f4e}"), 0,
                 "the torn record was not applied")
    checks.equal(db.command("EXISTS", "call:{rel-07101-4a7c-4d9e-8b1f-"
                                      "3d5f7b9d1f4e}"), 0,
                 "the corrupted record was not applied")
    harness.wait_until(lambda: not list(spool.glob("spool-*.log")), 20,
                       what="replayed spool files removed")
    damaged_lines = [line for line in callhook.log_lines()
                     if "damaged or torn" in line]
    checks.equal(len(damaged_lines), 2, "damaged regions reported, one per "
                                        "file")
    callhook.check_clean_exit(checks)


SCENARIOS = {
    "redis-kill": scenario_redis_kill,
    "redis-stop": scenario_redis_stop,
    "callhook-kill": scenario_callhook_kill,
    "callhook-term": scenario_callhook_term,
    "spool-faults": scenario_spool_faults,
    "spool-damage": scenario_spool_damage,
    "spool-removed": scenario_spool_removed,
}

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in SCENARIOS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(SCENARIOS)}}}")
    harness.run_test(f"reliability {name}", SCENARIOS[name])
