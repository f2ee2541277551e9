"""Replay every scenario fixture in order and check the responses and the
records it leaves in Redis."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events  # noqa: E402
from harness import Stack, run_test  # noqa: E402


DEFAULT_TTL = 2592000
FINAL_STATUSES = {"completed", "busy", "cancelled", "unanswered", "rejected",
                  "failed", "timeout"}


def check_responses(checks, name, scenario, client):
    seen = set()
    for index, req in enumerate(scenario["requests"]):
        where = f"{name} request {index}"
        resp = events.send(client, req)
        checks.equal(resp.status, scenario["responses"][index],
                     f"{where} status")
        if resp.status != 200:
            continue
        identity = events.event_identity(req)
        if events.path_of(req) == events.EVENT_PATH:
            expected = "duplicate" if identity in seen else "applied"
            checks.equal(resp.json(), {"result": expected}, f"{where} body")
        else:
            checks.equal(resp.headers.get("content-type"), "application/json",
                         f"{where} answer Content-Type")
            checks.check(isinstance(resp.json(), list),
                         f"{where}: the answer webhook must return a JSON "
                         f"array, got {resp.body[:100]!r}")
        seen.add(identity)


def check_expectations(checks, name, scenario, db):
    for key, fields in scenario["expect"].items():
        record = db.hgetall(key)
        checks.check(record, f"{name}: {key} is missing")
        for field, value in fields.items():
            checks.equal(record.get(field), value, f"{name}: {key} {field}")


def check_bookkeeping(checks, name, scenario, stack):
    db = stack.db
    distinct = events.distinct_events(scenario["requests"])
    expected_keys = sorted(k + suffix for k in distinct
                           for suffix in ("", ":events", ":versions"))
    # Other keys (indexes, streams) are not part of the record layout.
    record_keys = [k for k in db.keys()
                   if k.startswith(("call:{", "conversation:{"))]
    checks.equal(record_keys, expected_keys, f"{name}: record keys in Redis")

    for key, count in distinct.items():
        record = db.hgetall(key)
        checks.equal(record.get("events"), str(count), f"{name}: {key} events")
        checks.equal(db.command("LLEN", f"{key}:events"), count,
                     f"{name}: {key} history length")
        created, updated = record.get("created_at"), record.get("updated_at")
        if checks.check(created and created.isdigit() and updated
                        and updated.isdigit(),
                        f"{name}: {key} created_at {created!r} and "
                        f"updated_at {updated!r} must be epoch ms"):
            checks.check(int(created) <= int(updated),
                         f"{name}: {key} created_at {created} is after "
                         f"updated_at {updated}")

        final = (key.startswith("conversation:")
                 or record.get("status") in FINAL_STATUSES)
        for suffix in ("", ":events", ":versions"):
            ttl = db.command("TTL", key + suffix)
            if final:
                checks.check(0 < ttl <= DEFAULT_TTL,
                             f"{name}: {key + suffix} TTL {ttl} should be in "
                             f"(0, {DEFAULT_TTL}]")
            else:
                checks.equal(ttl, -1, f"{name}: {key + suffix} TTL of a call "
                                      f"without a final status")

        if key.startswith("call:"):
            uuid = key[len("call:{"):-1]
            resp = stack.callhook.admin().get(f"/calls/{uuid}")
            checks.equal(resp.status, 200, f"{name}: admin lookup of {uuid}")
            if resp.status == 200:
                checks.equal(resp.json(), record,
                             f"{name}: admin record of {uuid} vs HGETALL")


def body(checks):
    stack = Stack()
    scenarios = events.load_scenarios()
    checks.check(len(scenarios) > 0, "no scenario fixtures found")
    for scenario in scenarios:
        name = scenario["name"]
        checks.equal(len(scenario["responses"]), len(scenario["requests"]),
                     f"{name}: fixture has one response per request")
        stack.db.flushall()
        client = stack.callhook.public()
        check_responses(checks, name, scenario, client)
        client.close()
        events.barrier(stack.callhook)
        check_expectations(checks, name, scenario, stack.db)
        check_bookkeeping(checks, name, scenario, stack)
        history = stack.db.command("LRANGE", next(iter(scenario["expect"]))
                                   + ":events", 0, -1)
        for entry in history:
            checks.check(isinstance(json.loads(entry), dict),
                         f"{name}: history entry {entry[:80]!r} is not a "
                         f"JSON object")
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("fixtures", body)
