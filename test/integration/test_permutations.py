"""Replay each scenario in every order, with one request sent twice, and
check that the stored state never depends on the arrival order.

The state compared is the record without created_at and updated_at, the
version hash, the history as a set, and which keys expire. Scenarios with
more than MAX_FULL requests get a fixed-seed sample of SAMPLE orders.
"""

import itertools
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events  # noqa: E402
from harness import Stack, run_test  # noqa: E402


MAX_FULL = 7
SAMPLE = 200
SEED = 20261204
MAX_REPORTS = 3  # differing orders printed per scenario


def orders(count, rng):
    """Yield permutations of range(count): all of them, or a sample."""
    if count <= MAX_FULL:
        yield from itertools.permutations(range(count))
        return
    seen = set()
    limit = min(SAMPLE, math.factorial(count))
    while len(seen) < limit:
        order = list(range(count))
        rng.shuffle(order)
        if tuple(order) not in seen:
            seen.add(tuple(order))
            yield tuple(order)


def replay(stack, client, requests):
    """Send requests in order on a fresh database.

    Returns the list of (index, problem) for responses that were wrong.
    """
    problems = []
    seen = set()
    stack.db.flushall()
    for index, req in enumerate(requests):
        resp = events.send(client, req)
        if resp.status != 200:
            problems.append((index, f"status {resp.status}"))
            continue
        identity = events.event_identity(req)
        if events.path_of(req) == events.EVENT_PATH:
            expected = "duplicate" if identity in seen else "applied"
            if resp.json() != {"result": expected}:
                problems.append((index, f"body {resp.body!r}, expected "
                                        f"{expected}"))
        seen.add(identity)
    events.barrier(stack.callhook)
    return problems


def check_scenario(checks, stack, scenario, rng):
    name = scenario["name"]
    requests = scenario["requests"]
    distinct = events.distinct_events(requests)
    keys = sorted(distinct)
    client = stack.callhook.public()

    problems = replay(stack, client, requests)
    checks.equal(problems, [], f"{name}: in-order replay responses")
    baseline = events.snapshot(stack.db, keys)
    for key, count in distinct.items():
        checks.equal(baseline[key]["record"].get("events"), str(count),
                     f"{name}: {key} events after the in-order replay")

    runs = mismatches = 0
    for order in orders(len(requests), rng):
        sequence = [requests[i] for i in order]
        copy_of = rng.randrange(len(sequence))
        position = rng.randrange(len(sequence) + 1)
        sequence.insert(position, sequence[copy_of])
        labels = list(order)
        labels.insert(position, order[copy_of])

        problems = replay(stack, client, sequence)
        state = events.snapshot(stack.db, keys)
        runs += 1
        if not problems and state == baseline:
            continue
        mismatches += 1
        if mismatches <= MAX_REPORTS:
            detail = events.describe_differences(state, baseline)
            checks.check(False, f"{name}: order {labels} (request indices, "
                                f"one sent twice): responses {problems}, "
                                f"state: {detail or 'same'}")
    client.close()
    checks.equal(mismatches, 0, f"{name}: orders with a different result, "
                                f"out of {runs}")


def body(checks):
    stack = Stack()
    rng = random.Random(SEED)
    for scenario in events.load_scenarios():
        check_scenario(checks, stack, scenario, rng)
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("permutations", body)
