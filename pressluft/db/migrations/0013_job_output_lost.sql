-- Output lines a job printed that its log does not hold (job.output_dropped): the
-- database refused writes for longer than the worker's buffer lasted. 0 when
-- the log is complete.
ALTER TABLE jobs ADD COLUMN output_lines_lost INTEGER NOT NULL DEFAULT 0
    CHECK (output_lines_lost >= 0);
