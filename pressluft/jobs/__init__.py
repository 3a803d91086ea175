"""The job queue: every change to a server is a job.

failures.py  the failure taxonomy (stable codes, retryable or not)
workers.py   typed job workers (kind, args, timeout, attempts, locks as class
             attributes), `enqueue_job`, and the `WorkerPort` they work through
registry.py  the worker instances a daemon runs, by kind
queue.py     the commands: enqueue, claim, heartbeat, finish, cancel, rescue, retry
logs.py      lossless output lines, fenced by the lease
context.py   the daemon's own worker port (`LocalPort`) and its log writer
process.py   subprocesses in their own process group (killed on cancel/timeout)
worker.py    the worker pool: claim loop, executions, heartbeats, rescue
scheduler.py periodic jobs with de-duplication
builtin.py   noop, sleep
"""
