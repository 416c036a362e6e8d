DROP TRIGGER runs_awaited_finished ON runs;
DROP FUNCTION triggerd_awaited_run_finished();
ALTER TABLE runs DROP COLUMN awaited;
