"""Check that the JSON, form and query encodings of an event are the same
event: each scenario re-encoded gives the same record, and one event sent
in two encodings is stored once.

In the re-encoded requests every field is flat text: nested objects such as
dtmf become their compact JSON, numbers and booleans their text, and null
an empty value.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events  # noqa: E402
from harness import Stack, run_test  # noqa: E402


ENCODINGS = {
    "original": lambda req: req,
    "query": events.as_query,
    "form": events.as_form,
    "json": events.as_json,
}


def comparable(state):
    """Drop the history text, which keeps each request as it arrived."""
    return {key: {"record": s["record"], "versions": s["versions"],
                  "history_length": len(s["history"]), "ttl": s["ttl"]}
            for key, s in state.items()}


def replay(checks, stack, label, requests):
    stack.db.flushall()
    client = stack.callhook.public()
    seen = set()
    for index, req in enumerate(requests):
        resp = events.send(client, req)
        where = f"{label} request {index} ({req['method']} {req['path'][:60]})"
        if not checks.equal(resp.status, 200, f"{where} status"):
            print(f"    body: {resp.body[:200]!r}")
            continue
        if events.path_of(req) == events.EVENT_PATH:
            identity = events.event_identity(req)
            expected = "duplicate" if identity in seen else "applied"
            checks.equal(resp.json(), {"result": expected}, f"{where} body")
            seen.add(identity)
    client.close()
    events.barrier(stack.callhook)


def check_reencoded_scenarios(checks, stack):
    for scenario in events.load_scenarios():
        name = scenario["name"]
        requests = scenario["requests"]
        keys = sorted(events.distinct_events(requests))
        states = {}
        for encoding, convert in ENCODINGS.items():
            replay(checks, stack, f"{name} as {encoding}",
                   [convert(r) for r in requests])
            states[encoding] = comparable(events.snapshot(stack.db, keys))
        for encoding, state in states.items():
            checks.check(state == states["original"],
                         f"{name}: record when sent as {encoding} differs "
                         f"from the original: {state} vs "
                         f"{states['original']}")


def check_mixed_duplicates(checks, stack):
    """Send each event in one encoding, then in another: the second is a
    duplicate and leaves every key exactly as it was."""
    for scenario in events.load_scenarios():
        for index, req in enumerate(scenario["requests"]):
            key = events.event_key(req)
            for first in ENCODINGS:
                for second in ENCODINGS:
                    if first == second:
                        continue
                    label = (f"{scenario['name']} request {index} as "
                             f"{first} then {second}")
                    check_pair(checks, stack, label, key,
                               ENCODINGS[first](req), ENCODINGS[second](req))


def check_pair(checks, stack, label, key, first, second):
    stack.db.flushall()
    client = stack.callhook.public()
    resp = events.send(client, first)
    checks.equal(resp.status, 200, f"{label}: first status")
    events.barrier(stack.callhook)
    before = events.snapshot(stack.db, [key], ignore=())
    resp = events.send(client, second)
    client.close()
    checks.equal(resp.status, 200, f"{label}: second status")
    if events.path_of(second) == events.EVENT_PATH:
        checks.equal(resp.body, b'{"result":"duplicate"}',
                     f"{label}: second body")
    events.barrier(stack.callhook)
    after = events.snapshot(stack.db, [key], ignore=())
    checks.check(after == before,
                 f"{label}: the duplicate changed the record: "
                 f"{events.describe_differences(after, before)}")
    checks.equal(after[key]["record"].get("events"), "1",
                 f"{label}: events")


def body(checks):
    stack = Stack()
    check_reencoded_scenarios(checks, stack)
    check_mixed_duplicates(checks, stack)
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("encodings", body)
