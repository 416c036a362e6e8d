DROP INDEX deliveries_hook_due;
