"""Check --record-ttl and --history-max against the keys in Redis."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stack, run_test  # noqa: E402

UUID = "8e0a2c4e-6a8c-4e0a-a2c4-6e8a0c2e4a6c"
STATUSES = ["started", "ringing", "answered", "disconnected", "completed"]


def call_events(uuid):
    return [json.dumps({"uuid": uuid, "status": status,
                        "timestamp": f"2026-12-04T10:00:0{i}.000Z"},
                       separators=(",", ":"))
            for i, status in enumerate(STATUSES)]


def send_all(checks, stack, label, bodies):
    client = stack.callhook.public()
    for i, body in enumerate(bodies):
        checks.equal(client.post("/call_events", body).status, 200,
                     f"{label}: request {i}")
    client.close()


def ttls(db, base):
    return [db.command("TTL", base + suffix)
            for suffix in ("", ":events", ":versions")]


def check_ttl(checks, ttl_option, expect):
    stack = Stack(callhook_args=["--record-ttl", str(ttl_option)])
    label = f"--record-ttl {ttl_option}"
    bodies = call_events(UUID)

    send_all(checks, stack, label, bodies[:3])
    checks.equal(ttls(stack.db, f"call:{{{UUID}}}"), [-1, -1, -1],
                 f"{label}: TTLs before a final status")
    send_all(checks, stack, label, bodies[3:])
    for ttl in ttls(stack.db, f"call:{{{UUID}}}"):
        checks.check(expect(ttl), f"{label}: TTL {ttl} after completed")

    send_all(checks, stack, label,
             ['{"conversation_uuid":"CON-ttl","recording_url":"x"}'])
    for ttl in ttls(stack.db, "conversation:{CON-ttl}"):
        checks.check(expect(ttl), f"{label}: conversation TTL {ttl}")
    stack.callhook.check_clean_exit(checks)


def check_history_max(checks):
    stack = Stack(callhook_args=["--history-max", "2"])
    bodies = call_events(UUID)
    send_all(checks, stack, "--history-max 2", bodies)
    history = [h.decode() for h in
               stack.db.command("LRANGE", f"call:{{{UUID}}}:events", 0, -1)]
    checks.equal(history, bodies[-2:], "--history-max 2: history list")
    record = stack.db.hgetall(f"call:{{{UUID}}}")
    checks.equal(record.get("events"), "5", "--history-max 2: events count")
    checks.equal(record.get("status"), "completed", "--history-max 2: status")
    stack.callhook.check_clean_exit(checks)


def body(checks):
    check_ttl(checks, 0, lambda ttl: ttl == -1)
    check_ttl(checks, 60, lambda ttl: 0 < ttl <= 60)
    check_history_max(checks)


if __name__ == "__main__":
    run_test("record_options", body)
