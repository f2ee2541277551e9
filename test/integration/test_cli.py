"""Check the command line: --version, --help, and that invalid values make
callhook exit at once with a message naming the option."""

import re
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import (Callhook, Stack, free_port, run_callhook,  # noqa: E402
                     run_test)

DOCUMENTED_OPTIONS = [
    "--listen", "--admin-listen", "--admin-token", "--redis", "--public-url",
    "--answer-text", "--answer-ncco", "--max-body", "--max-headers",
    "--request-timeout", "--idle-timeout", "--max-connections",
    "--record-ttl", "--history-max", "--shutdown-timeout", "--log-level",
    "--help", "--version",
]
# Placeholders that --help shows for options taking a whole number.
NUMBER_PLACEHOLDERS = {"BYTES", "SECONDS", "MILLISECONDS", "COUNT"}
INVALID_NUMBERS = ["abc", "-1", "1.5", "", "5x", "0x10", "5 ",
                   "99999999999999999999999"]
HELP_OPTION_RE = re.compile(r"^  (--[a-z][a-z-]*)(?: ([A-Z:]+))?\s")


def run(checks, label, args, env=None):
    """Run callhook with args that must make it exit.

    Returns the CompletedProcess, or None when callhook kept running.
    """
    try:
        return run_callhook(args, timeout=15, env=env)
    except subprocess.TimeoutExpired:
        checks.check(False, f"{label}: callhook did not exit")
        return None


def base_args():
    # Valid listeners and an unused Redis port, so only the option under
    # test can make callhook exit.
    return ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--redis", f"redis://127.0.0.1:{free_port()}/0"]


def check_version(checks):
    result = run(checks, "--version", ["--version"])
    checks.equal(result.returncode, 0, "--version exit status")
    match = re.fullmatch(r"callhook (\d+\.\d+\.\d+)\n", result.stdout)
    checks.check(match, f"--version output {result.stdout!r}")
    if match:
        stack = Stack()
        checks.check(f"callhook {match.group(1)} listening"
                     in stack.callhook.log(),
                     "--version and the listening line disagree")
        stack.callhook.check_clean_exit(checks)


def help_options(checks):
    """Return {option: placeholder} from --help."""
    result = run(checks, "--help", ["--help"])
    checks.equal(result.returncode, 0, "--help exit status")
    checks.equal(result.stderr, "", "--help writes nothing to stderr")
    options = {}
    for line in result.stdout.splitlines():
        match = HELP_OPTION_RE.match(line)
        if match:
            options[match.group(1)] = match.group(2)
    for option in DOCUMENTED_OPTIONS:
        checks.check(option in options, f"--help does not list {option}")
    for option, placeholder in options.items():
        if placeholder is None:
            continue
        env_line = re.search(rf"^  {re.escape(option)} .*\n +\[([A-Z_]+)\]",
                             result.stdout, re.M)
        checks.check(env_line, f"--help gives no environment variable for "
                               f"{option}")
    return options


def check_invalid_numbers(checks, options):
    numeric = [o for o, p in options.items() if p in NUMBER_PLACEHOLDERS]
    checks.check("--max-body" in numeric,
                 f"--help shows no numeric options: {options}")
    for option in numeric:
        for value in INVALID_NUMBERS:
            label = f"{option} {value!r}"
            result = run(checks, label, base_args() + [option, value])
            if result is None:
                continue
            checks.equal(result.returncode, 2, f"{label}: exit status")
            checks.check(option in result.stderr,
                         f"{label}: message does not name {option}: "
                         f"{result.stderr.strip()!r}")

    for option, value in (("--max-body", "10"), ("--request-timeout", "0"),
                          ("--history-max", "0")):
        result = run(checks, f"{option} {value}",
                     base_args() + [option, value])
        if result is not None:
            checks.equal(result.returncode, 2, f"{option} {value}: below the "
                                               f"minimum")

    result = run(checks, "CALLHOOK_MAX_BODY=abc", base_args(),
                 env={"CALLHOOK_MAX_BODY": "abc"})
    if result is not None:
        checks.equal(result.returncode, 2, "CALLHOOK_MAX_BODY=abc exit status")
        checks.check("CALLHOOK_MAX_BODY" in result.stderr,
                     f"CALLHOOK_MAX_BODY=abc: message does not name the "
                     f"variable: {result.stderr.strip()!r}")


def check_usage_errors(checks):
    cases = [
        ("unknown option", ["--bogus"], 2, "--bogus"),
        ("missing value", ["--max-body"], 2, "--max-body"),
        ("positional argument", ["extra"], 2, "extra"),
        ("invalid log level", ["--log-level", "loud"], 2, "--log-level"),
        ("invalid listen address", ["--listen", "nonsense"], None,
         "--listen"),
        ("listen port out of range", ["--listen", "127.0.0.1:70000"], None,
         "--listen"),
        ("IPv6 listen without brackets", ["--listen", "::1:0"], None,
         "--listen"),
        ("redis URL of another scheme", ["--redis", "http://127.0.0.1/"],
         2, "--redis"),
        ("redis port out of range", ["--redis", "redis://127.0.0.1:99999/0"],
         2, "--redis"),
        ("redis database not a number", ["--redis", "redis://127.0.0.1/x"],
         2, "--redis"),
    ]
    for label, args, status, named in cases:
        result = run(checks, label, base_args() + args)
        if result is None:
            continue
        if status is None:
            checks.check(result.returncode != 0, f"{label}: exit status 0")
        else:
            checks.equal(result.returncode, status, f"{label}: exit status")
        checks.check(named in result.stderr,
                     f"{label}: message does not name {named}: "
                     f"{result.stderr.strip()!r}")


def check_port_in_use(checks):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = base_args() + ["--listen", f"127.0.0.1:{port}"]
        result = run(checks, "listen port in use", args)
        if result is not None:
            checks.check(result.returncode != 0,
                         "listen port in use: exit status 0")
            checks.check("--listen" in result.stderr,
                         f"listen port in use: message does not name "
                         f"--listen: {result.stderr.strip()!r}")


def check_ipv6_loopback(checks):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        print("skipping the IPv6 check: ::1 is not available")
        return
    stack = Stack()
    callhook = Callhook(stack.redis.url(), ["--listen", "[::1]:0"])
    callhook.start()
    checks.equal(callhook.public_host, "::1", "IPv6 listener host")
    checks.equal(callhook.public().get("/healthz").status, 200,
                 "/healthz over IPv6")
    callhook.check_clean_exit(checks)


def body(checks):
    check_version(checks)
    options = help_options(checks)
    check_invalid_numbers(checks, options)
    check_usage_errors(checks)
    check_port_in_use(checks)
    check_ipv6_loopback(checks)


if __name__ == "__main__":
    run_test("cli", body)
