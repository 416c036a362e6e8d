-- The storage crate counts a trigger's fires itself, once per trigger per write batch
-- (`runs::count_fires`), instead of this row trigger, which ran PL/pgSQL and wrote a new version
-- of the trigger's row for every run: fifty runs of one trigger in a batch left fifty row
-- versions behind.
DROP TRIGGER runs_count_fire ON runs;
DROP FUNCTION runs_count_fire();
