-- The minimal raw-SQL transfer: the least any ledger on this database must
-- do to move money between two wallets, one transaction per transfer.
-- The conditional debit, the credit (lower id first, so concurrent
-- transfers never deadlock), one INSERT of both ledger rows, COMMIT.
-- Variables: :wallets, :hot and :hot_share_pct (hot-wallet mode; 0 to disable).
\set pool CASE WHEN random(1, 100) <= :hot_share_pct THEN :hot ELSE :wallets END
\set a random(0, :pool - 1)
\set b (:a + random(1, :pool - 1)) % :pool
\set amount random(1, 2000)
\set debit -1 * :amount
BEGIN;
\if :a < :b
UPDATE minimal_wallet SET balance = balance - :amount WHERE id = :a AND balance >= :amount;
UPDATE minimal_wallet SET balance = balance + :amount WHERE id = :b;
\else
UPDATE minimal_wallet SET balance = balance + :amount WHERE id = :b;
UPDATE minimal_wallet SET balance = balance - :amount WHERE id = :a AND balance >= :amount;
\endif
INSERT INTO minimal_entry (wallet_id, amount) VALUES (:a, :debit), (:b, :amount);
COMMIT;
