DROP INDEX triggers_next_fire;
DROP TABLE cron_slots;
