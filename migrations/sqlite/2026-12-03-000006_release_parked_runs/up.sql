-- Versions before the step executor parked every pending run of a workflow with steps under a
-- one-hour lease ("steps do not execute yet"). Those runs can start now: their leases are
-- released so the first worker claims them at once. Releasing a pending run's lease is safe in
-- any case: a worker that still holds it only loses a claim it has not acted on, and its next
-- lease-checked write is refused.
UPDATE runs SET lease_owner = NULL, lease_expires_at = NULL WHERE status = 'pending';
