-- Nothing to restore: released leases are re-taken by the next claim.
SELECT 1;
