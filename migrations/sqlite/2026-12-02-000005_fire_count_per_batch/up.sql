-- The storage crate counts a trigger's fires itself, once per trigger per write batch
-- (`runs::count_fires`), as it already does on PostgreSQL (000004). This row trigger made every
-- INSERT into `runs` a multi-write statement, for which SQLite keeps a statement journal: each
-- page the INSERT first touched was copied into it, on every webhook request.
DROP TRIGGER runs_count_fire;
