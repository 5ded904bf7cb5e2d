-- The old ceiling: the statements walletql ran for one transfer on
-- PostgreSQL before the posting engine (one transaction per transfer), in
-- the same order, on the same schema (see BENCHMARKS.md). Each row's time is
-- taken under its wallet's lock, as walletql now does, and the debit needs the
-- available balance (balance - held) and each row records it, so that running
-- this leaves a ledger the audit still passes.
-- Wallet n of a seeded database has the id 00000000-0000-7000-9000-<n in hex>,
-- so ids sort as their numbers do.
-- Variables: :clients (seeded clients), :hot and :hot_share_pct (hot-wallet mode; 0 to disable).
\set pool CASE WHEN random(1, 100) <= :hot_share_pct THEN :hot ELSE :clients END
\set a random(0, :pool - 1)
\set b (:a + random(1, :pool - 1)) % :pool
\set amount random(1, 2000)
-- 1. authentication: the client's token hash (walletql hashes in Rust)
SELECT wallet.client_id, wallet.id FROM wallet INNER JOIN client ON wallet.client_id = client.id
  WHERE client.token_hash = encode(sha256(convert_to('wq_seed_' || :a, 'UTF8')), 'hex');
BEGIN;
-- 2. only when the payee's id sorts first: lock it before the debit, so row
--    locks are always taken in ascending id order
\if :b < :a
SELECT id FROM wallet WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:b)::bigint), 12, '0'))::uuid FOR UPDATE;
\endif
-- 3. the conditional debit
UPDATE wallet SET balance = balance - :amount, last_seq = last_seq + 1,
    updated_at = greatest(updated_at + interval '1 microsecond', clock_timestamp())
  WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:a)::bigint), 12, '0'))::uuid AND balance - held >= :amount
  RETURNING id AS from_id, client_id AS from_client, currency AS from_currency, balance AS from_balance,
            balance - held AS from_available,
            last_seq AS from_seq, created_at AS from_created, updated_at AS from_updated
\gset
-- 4. the credit
UPDATE wallet SET balance = balance + :amount, last_seq = last_seq + 1,
    updated_at = greatest(updated_at + interval '1 microsecond', clock_timestamp())
  WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:b)::bigint), 12, '0'))::uuid AND balance <= 100000000000000 - :amount
  RETURNING id AS to_id, client_id AS to_client, currency AS to_currency, balance AS to_balance,
            balance - held AS to_available,
            last_seq AS to_seq, created_at AS to_created, updated_at AS to_updated
\gset
-- 5. the transfer and both ledger rows in one statement (walletql made its
--    UUIDv7s in Rust and bound them; here the server makes the ids), then the
--    NOTIFY, in the format walletql's listeners read now (the old design sent
--    the rows as JSON, about 640 bytes)
WITH t AS (
  INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at)
  VALUES (gen_random_uuid(), :from_id, :to_id, :amount, NULL, now()) RETURNING id
), o AS (
  INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, available_after, transfer_id, counterparty_wallet_id, description, created_at)
  SELECT gen_random_uuid(), (:from_id)::uuid, (:from_seq)::bigint, 'TRANSFER_OUT', (:amount)::bigint, (:from_balance)::bigint, (:from_available)::bigint, t.id, (:to_id)::uuid, NULL, (:from_updated)::timestamptz FROM t
  UNION ALL
  SELECT gen_random_uuid(), (:to_id)::uuid, (:to_seq)::bigint, 'TRANSFER_IN', (:amount)::bigint, (:to_balance)::bigint, (:to_available)::bigint, t.id, (:from_id)::uuid, NULL, (:to_updated)::timestamptz FROM t
)
SELECT pg_notify('walletql_operations',
  replace((:from_id)::text, '-', '') || ':' || (:from_seq)::text || ':' || (:from_seq)::text || ' ' ||
  replace((:to_id)::text, '-', '') || ':' || (:to_seq)::text || ':' || (:to_seq)::text);
COMMIT;
