-- Nothing to do on PostgreSQL: its row trigger went in 000004. This migration drops SQLite's;
-- kept so that both backends share migration names.
SELECT 1;
