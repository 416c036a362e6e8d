-- Runs a webhook request with `response.mode = "sync"` waits for (SPEC 4.5). The request waits on
-- the node that received it; the run may finish on any node of the cluster. When an awaited run
-- reaches a final state, the database tells every node (NOTIFY in the finishing transaction, so
-- it is sent only if that transaction commits); the waiting node LISTENs on one connection.
-- Only awaited runs notify: other runs cost the WHEN test and nothing else.
ALTER TABLE runs ADD COLUMN awaited BOOLEAN NOT NULL DEFAULT FALSE;

CREATE FUNCTION triggerd_awaited_run_finished() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('triggerd_run_finished', NEW.id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER runs_awaited_finished
    AFTER UPDATE OF status ON runs
    FOR EACH ROW
    WHEN (NEW.awaited AND NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION triggerd_awaited_run_finished();
