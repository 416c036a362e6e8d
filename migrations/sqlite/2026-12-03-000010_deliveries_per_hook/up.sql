-- The delivery worker claims due deliveries hook by hook (at most a few hundred of each, oldest
-- due first), so that one receiver's backlog neither fills a claim nor makes every claim read
-- past it: one index range per hook.
CREATE INDEX deliveries_hook_due ON deliveries (hook_id, next_attempt_at) WHERE status = 'pending';
