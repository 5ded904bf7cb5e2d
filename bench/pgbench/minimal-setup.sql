-- The minimal raw-SQL transfer's tables, beside walletql's in the bench
-- database: 10,000 wallets with integer ids and one table of ledger rows,
-- no foreign keys, no idempotency, no notifications. Every wallet starts
-- with more than any run can spend, so no debit is ever refused.
DROP TABLE IF EXISTS minimal_entry, minimal_wallet;
CREATE TABLE minimal_wallet (id integer PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE minimal_entry (
  id bigserial PRIMARY KEY,
  wallet_id integer NOT NULL,
  amount bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO minimal_wallet SELECT n, 1000000000000 FROM generate_series(0, 9999) AS n;
VACUUM ANALYZE minimal_wallet;
