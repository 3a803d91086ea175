-- Which job retries which: a failed or cancelled job is retried once (its retry
-- carries on; retry that one if it fails too), so the retry command and the
-- job views look up `retry_of`. Partial: jobs that are no retry add no entry.
CREATE INDEX jobs_by_retry_of ON jobs (retry_of) WHERE retry_of IS NOT NULL;
