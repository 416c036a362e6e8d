CREATE FUNCTION runs_count_fire() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE triggers SET fire_count = fire_count + 1, last_fired_at = NEW.created_at
    WHERE id = NEW.trigger_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_count_fire AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.trigger_id IS NOT NULL) EXECUTE FUNCTION runs_count_fire();
