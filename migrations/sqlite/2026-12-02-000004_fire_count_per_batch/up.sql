-- On PostgreSQL this migration replaces the `runs_count_fire` row trigger with one UPDATE per
-- write batch. SQLite keeps its trigger: it runs inside the INSERT's own bytecode, cheaper than
-- preparing an UPDATE, which diesel never caches. Kept so that both backends share migration
-- names.
SELECT 1;
