-- The raw read a wallet query must at least make: one primary-key SELECT of
-- a seeded wallet's balance (wallet n has the id 00000000-0000-7000-9000-<n>).
\set a random(0, :clients - 1)
SELECT balance FROM wallet WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:a)::bigint), 12, '0'))::uuid;
