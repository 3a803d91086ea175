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
from typing import Literal

import msgspec

from pressluft.jobs.failures import JobFailure
from pressluft.jobs.process import run_process
from pressluft.jobs.workers import JobWorker, NoArgs, WorkerPort

__all__ = ["DIAGNOSTIC_WORKERS", "EXIT_RETRYABLE", "Noop", "Sleep", "SleepPayload"]

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


class Noop(JobWorker[NoArgs]):
    """Ends at once."""

    kind = "noop"
    args = NoArgs

    async def work(self, ctx: WorkerPort, args: NoArgs) -> None:
        ctx.check_cancelled()


class Sleep(JobWorker[SleepPayload]):
    """A real subprocess with a child, `lines` lines over `seconds`, then `outcome`."""

    kind = "sleep"
    args = SleepPayload

    async def work(self, ctx: WorkerPort, args: SleepPayload) -> None:
        argv = [
            sys.executable,
            "-c",
            _SCRIPT,
            str(args.seconds),
            str(args.lines),
            str(_EXIT[args.outcome]),
        ]
        code = await run_process(ctx, argv)
        if code == 0:
            return
        if code == EXIT_RETRYABLE:
            raise JobFailure("DIAGNOSTIC_RETRYABLE", f"the sleep script exited with {code}")
        if code > 0:
            raise JobFailure("DIAGNOSTIC_FATAL", f"the sleep script exited with {code}")
        raise JobFailure("PROCESS_FAILED", f"the sleep script was killed by signal {-code}")


#: The diagnostic workers every daemon runs.
DIAGNOSTIC_WORKERS = (Noop(), Sleep())
