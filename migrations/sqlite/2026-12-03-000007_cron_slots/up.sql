-- Cron firing (SPEC 5). One row per fired slot: the primary key makes a second firing of a slot
-- impossible, whichever node fires it and however often it restarts. The slot's run is written
-- in the same transaction as this row and the trigger's counters.
CREATE TABLE cron_slots (
    trigger_id    TEXT NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    scheduled_for BIGINT NOT NULL,
    run_id        TEXT NOT NULL,
    fired_at      BIGINT NOT NULL,
    PRIMARY KEY (trigger_id, scheduled_for)
) WITHOUT ROWID;

-- The scheduler asks for the earliest next_fire_at (and the due triggers) through this index,
-- never scanning every trigger. Webhook and disabled triggers have no next_fire_at.
CREATE INDEX triggers_next_fire ON triggers (next_fire_at) WHERE next_fire_at IS NOT NULL;

-- Disabled cron triggers do not fire: their next slot is computed again when they are enabled.
UPDATE triggers SET next_fire_at = NULL WHERE enabled = FALSE;
