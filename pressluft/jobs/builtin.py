"""The built-in diagnostic job types, usable without any node.

`noop` ends at once. `sleep` runs a real subprocess (in its own process group,
like every job's processes) that starts a child process of its own, prints
`lines` lines spread over `seconds` seconds and exits as `outcome` says:
`succeed` (0), `fail_retryable` (75, EX_TEMPFAIL) or `fail_fatal` (1). They
exercise the whole path — claim, leases, logs, cancellation, timeouts,
retries, crash rescue — for tests, benchmarks and operators checking the
workers.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

import msgspec

from pressluft.jobs.context import JobContext
from pressluft.jobs.failures import JobFailure
from pressluft.jobs.process import run_process
from pressluft.jobs.registry import JobRegistry, JobType

__all__ = ["EXIT_RETRYABLE", "SleepPayload", "register_diagnostics"]

#: EX_TEMPFAIL: the sleep script's "try again later".
EXIT_RETRYABLE = 75

Outcome = Literal["succeed", "fail_retryable", "fail_fatal"]


class SleepPayload(msgspec.Struct, frozen=True, kw_only=True):
    seconds: float = 0.0
    lines: int = 0
    outcome: Outcome = "succeed"


# Runs as `python -c`: a child process (so cancellation has a group to stop),
# then the lines, then the exit code. Line i is printed at i/lines of the time.
_SCRIPT = """
import subprocess, sys, time
seconds, lines, code = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
child = subprocess.Popen(["sleep", str(int(seconds) + 3600)])
start = time.monotonic()
for i in range(1, lines + 1):
    delay = start + seconds * i / lines - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    print(f"line {i}/{lines}", flush=True)
rest = start + seconds - time.monotonic()
if rest > 0:
    time.sleep(rest)
child.terminate()
child.wait()
if code:
    print(f"exiting with {code}", file=sys.stderr, flush=True)
sys.exit(code)
"""

_EXIT = {"succeed": 0, "fail_retryable": EXIT_RETRYABLE, "fail_fatal": 1}


async def noop(ctx: JobContext) -> None:
    ctx.check_cancelled()


async def sleep(ctx: JobContext) -> None:
    payload = msgspec.convert(ctx.payload, SleepPayload)
    argv = [
        sys.executable,
        "-c",
        _SCRIPT,
        str(payload.seconds),
        str(payload.lines),
        str(_EXIT[payload.outcome]),
    ]
    code = await run_process(ctx, argv)
    if code == 0:
        return
    if code == EXIT_RETRYABLE:
        raise JobFailure("DIAGNOSTIC_RETRYABLE", f"the sleep script exited with {code}")
    if code > 0:
        raise JobFailure("DIAGNOSTIC_FATAL", f"the sleep script exited with {code}")
    raise JobFailure("PROCESS_FAILED", f"the sleep script was killed by signal {-code}")


def register_diagnostics(registry: JobRegistry, **overrides: Any) -> None:
    """Add `noop` and `sleep` (overrides: JobType fields, e.g. a shorter backoff in tests)."""
    registry.register(JobType("noop", noop, **overrides))
    registry.register(JobType("sleep", sleep, **overrides))
