CREATE TRIGGER runs_count_fire AFTER INSERT ON runs
WHEN NEW.trigger_id IS NOT NULL
BEGIN
    UPDATE triggers SET fire_count = fire_count + 1, last_fired_at = NEW.created_at
    WHERE id = NEW.trigger_id;
END;
