-- The raw-SQL ceiling: exactly the statements walletql runs for one transfer
-- on PostgreSQL, in the same order, on the same schema (see BENCHMARKS.md).
-- Wallet n of a seeded database has the id 00000000-0000-7000-9000-<n in hex>.
-- Variables: :clients (seeded clients), :hot and :hot_share_pct (hot-wallet mode; 0 to disable).
\set pool CASE WHEN random(1, 100) <= :hot_share_pct THEN :hot ELSE :clients END
\set a random(0, :pool - 1)
\set b (:a + random(1, :pool - 1)) % :pool
\set amount random(1, 2000)
-- 1. authentication: the client's token hash (walletql hashes in Rust)
SELECT wallet.client_id, wallet.id FROM wallet INNER JOIN client ON wallet.client_id = client.id
  WHERE client.token_hash = encode(sha256(convert_to('wq_seed_' || :a, 'UTF8')), 'hex');
BEGIN;
-- 2. lock both wallets in id order
SELECT id FROM wallet
  WHERE id IN (('00000000-0000-7000-9000-' || lpad(to_hex((:a)::bigint), 12, '0'))::uuid,
               ('00000000-0000-7000-9000-' || lpad(to_hex((:b)::bigint), 12, '0'))::uuid)
  ORDER BY id ASC FOR UPDATE;
-- 3. the conditional debit
UPDATE wallet SET balance = balance - :amount, last_seq = last_seq + 1, updated_at = now()
  WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:a)::bigint), 12, '0'))::uuid AND balance >= :amount
  RETURNING id AS from_id, client_id AS from_client, currency AS from_currency, balance AS from_balance,
            last_seq AS from_seq, created_at AS from_created, updated_at AS from_updated
\gset
-- 4. the credit
UPDATE wallet SET balance = balance + :amount, last_seq = last_seq + 1, updated_at = now()
  WHERE id = ('00000000-0000-7000-9000-' || lpad(to_hex((:b)::bigint), 12, '0'))::uuid AND balance <= 100000000000000 - :amount
  RETURNING id AS to_id, client_id AS to_client, currency AS to_currency, balance AS to_balance,
            last_seq AS to_seq, created_at AS to_created, updated_at AS to_updated
\gset
-- 5. the transfer (walletql makes its UUIDv7 in Rust; here the server makes one)
INSERT INTO transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at)
  VALUES (gen_random_uuid(), :from_id, :to_id, :amount, NULL, now())
  RETURNING id AS transfer_id
\gset
-- 6. both ledger rows, one statement
INSERT INTO operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, counterparty_wallet_id, description, created_at)
  VALUES (gen_random_uuid(), :from_id, :from_seq, 'TRANSFER_OUT', :amount, :from_balance, :transfer_id, :to_id, NULL, now()),
         (gen_random_uuid(), :to_id, :to_seq, 'TRANSFER_IN', :amount, :to_balance, :transfer_id, :from_id, NULL, now());
-- 7. announce to live subscribers (a payload of the size walletql sends)
SELECT pg_notify('walletql_operations', repeat('x', 640));
COMMIT;
