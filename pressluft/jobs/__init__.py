"""The job queue: every change to a server is a job.

failures.py  the failure taxonomy (stable codes, retryable or not)
registry.py  job types: handler, timeout, attempts, backoff
queue.py     the commands: enqueue, claim, heartbeat, finish, cancel, rescue, retry
logs.py      lossless output lines, fenced by the lease
context.py   what a handler gets (payload, log, cancellation, work dir)
process.py   subprocesses in their own process group (killed on cancel/timeout)
worker.py    the worker pool: claim loop, executions, heartbeats, rescue
scheduler.py periodic jobs with de-duplication
builtin.py   noop, sleep, housekeeping
"""
