//! Wallets: reading them (`wallet`, `wallets`, `operations`) and money
//! entering or leaving one (`deposit`, `withdraw`, the operator's).

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use entity::{operation, wallet};
use uuid::Uuid;

use super::changes::Changed;
use super::clients::{Client, client_by_id};
use super::context::{
    amount, answer, caller, counted, ledger, max_page_size, money, readable_wallet, reader,
    signed_money,
};
use super::controls::{self, WalletLimits, WalletStatus, WalletStatusChange};
use super::metadata::{self, MetadataInput};
use super::node::node_id;
use super::operations::{
    Operation, OperationConnection, OperationFilterInput, cursor_at, operations_connection,
};
use super::pagination::PageArgs;
use super::payments::Transfer;
use super::scalars::{Dec, Id, Timestamp};
use super::statements::{self, Statement};
use crate::domain::auth::Caller;
use crate::domain::cursor::{TransferCursor, WalletCursor};
use crate::domain::error::AppError;
use crate::ledger::{DepositRequest, WithdrawRequest};
use crate::store::reads;

/// A wallet holding USD, as its owner (or the operator) sees it. Built only
/// where the caller may read it: its own wallet, or any for the operator.
pub struct Wallet(pub wallet::Model);

/// Another client's wallet, as a counterparty sees it: only its id.
#[derive(SimpleObject)]
pub struct PublicWallet {
    /// The wallet's id. Not `id`: the wallet's own type is `Wallet`, and a
    /// normalised cache keeps one type per id.
    pub wallet_id: Id,
}

impl PublicWallet {
    pub fn new(id: Uuid) -> PublicWallet {
        PublicWallet { wallet_id: Id(id) }
    }
}

#[Object]
impl Wallet {
    /// Globally unique (a UUID): the `Node` id.
    pub async fn id(&self) -> ID {
        node_id(self.0.id)
    }

    async fn currency(&self) -> &str {
        &self.0.currency
    }

    /// The posted balance, always with two decimals; below zero only on
    /// credit (see `limits.creditLimit`).
    async fn balance(&self) -> Dec {
        signed_money(self.0.balance)
    }

    /// The sum of the wallet's open holds as payer (pending transfers).
    async fn held_balance(&self) -> Result<Dec> {
        Ok(money(self.0.held)?)
    }

    /// The sum of the open holds to this wallet as payee: money promised
    /// to it (captured, it arrives; voided or expired, it does not), never
    /// counted in `balance`.
    async fn incoming_held_balance(&self) -> Result<Dec> {
        Ok(money(self.0.incoming_held)?)
    }

    /// What its history adds up to from `from` (inclusive) to `to`
    /// (exclusive): opening and closing balances, money in and out, and
    /// how many operations. The lines are `GET
    /// /wallets/{id}/statement.csv?from=&to=` (CSV).
    async fn statement(
        &self,
        ctx: &Context<'_>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Statement> {
        Ok(statements::statement(ctx, self.0.id, from, to).await?)
    }

    /// ACTIVE, FROZEN or CLOSED: whether money may move.
    async fn status(&self) -> WalletStatus {
        self.0.status.into()
    }

    /// The operator's changes of its status, newest first, with their
    /// reasons (`first`: at most 100).
    async fn status_changes(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: i32,
    ) -> Result<Vec<WalletStatusChange>> {
        Ok(controls::status_changes(ctx, self.0.id, Some(first)).await?)
    }

    /// Its limits on what leaves it, and today's use of them.
    async fn limits(&self) -> WalletLimits {
        WalletLimits(self.0.clone())
    }

    /// What the wallet may spend: `balance - heldBalance +
    /// limits.creditLimit`. Transfers, refunds and new holds spend only
    /// this; withdrawals only the wallet's own money (`balance -
    /// heldBalance`). Below zero when its credit line was lowered under
    /// what it uses: it then pays nothing until it is back within.
    async fn available_balance(&self) -> Dec {
        signed_money(self.0.available())
    }

    /// Open holds where this wallet is payer or payee, soonest deadline
    /// first: what a payee may capture, what a payer has promised.
    #[graphql(complexity = "first.unwrap_or(20).max(1) as usize * child_complexity")]
    async fn pending_transfers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Transfer>> {
        let page = PageArgs {
            first,
            after,
            last: None,
            before: None,
        }
        .parse(max_page_size(ctx), TransferCursor::decode)?;
        let (id, after, fetch) = (self.0.id, page.query.after, page.query.fetch);
        let rows = reader(ctx)?
            .read(|db| async move { reads::pending_transfers(&db, id, after, fetch).await })
            .await
            .map_err(AppError::from)?;
        Ok(page.connection(
            rows,
            |t| TransferCursor::encode(t.expires_at.unwrap_or(t.created_at), t.id),
            Transfer,
        ))
    }

    /// The posted balance from all the wallet's operations strictly before
    /// `at` (0.00 before the first), so that `balanceAt(to) -
    /// balanceAt(from)` is the net of `operations(filter: {from, to})`. One
    /// index probe, however deep the history.
    async fn balance_at(&self, ctx: &Context<'_>, at: Timestamp) -> Result<Dec> {
        let id = self.0.id;
        let cents = reader(ctx)?
            .read(|db| async move { reads::balance_before(&db, id, at.0).await })
            .await
            .map_err(AppError::from)?;
        Ok(signed_money(cents))
    }

    /// Number of operations in the wallet's history (the newest one's sequence).
    async fn operation_count(&self) -> i64 {
        self.0.last_seq
    }

    /// The position of the wallet's newest operation, consistent with
    /// `balance`: pass it as `after` to `operationCreated` to hear exactly
    /// what happens from this snapshot on.
    async fn cursor(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(cursor_at(ctx, self.0.id, self.0.last_seq).await?)
    }

    async fn client(&self, ctx: &Context<'_>) -> Result<Client> {
        client_by_id(ctx, self.0.client_id).await
    }

    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }

    async fn updated_at(&self) -> Timestamp {
        Timestamp(self.0.updated_at)
    }

    /// The wallet's history, newest first.
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(1) as usize * child_complexity")]
    async fn operations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<OperationFilterInput>,
    ) -> Result<OperationConnection> {
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        let count = self.0.last_seq;
        Ok(operations_connection(ctx, self.0.id, count, args, filter).await?)
    }
}

#[derive(Default)]
pub struct WalletsQuery;

#[Object]
impl WalletsQuery {
    /// A wallet: the caller's own, or any for the operator.
    async fn wallet(&self, ctx: &Context<'_>, id: Id) -> Result<Wallet> {
        Ok(readable_wallet(ctx, id.0).await?)
    }

    /// Wallets, oldest first: all of them for the operator, a client's own
    /// for a client.
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(1) as usize * child_complexity")]
    async fn wallets(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, Wallet>> {
        let owner = match caller(ctx)? {
            Caller::Anonymous => return Err(AppError::Unauthenticated.into()),
            Caller::Operator => None,
            Caller::Client { client_id, .. } => Some(*client_id),
        };
        let page = PageArgs {
            first,
            after,
            last,
            before,
        }
        .parse(max_page_size(ctx), WalletCursor::decode)?;
        let query = &page.query;
        let rows = reader(ctx)?
            .read(|db| async move { reads::wallet_page(&db, owner, query).await })
            .await
            .map_err(AppError::from)?;
        Ok(page.connection(rows, |w| WalletCursor::encode(w.id), Wallet))
    }

    /// A wallet's history, newest first.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(1) as usize * child_complexity")]
    async fn operations(
        &self,
        ctx: &Context<'_>,
        wallet_id: Id,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<OperationFilterInput>,
    ) -> Result<OperationConnection> {
        let wallet_id = wallet_id.0;
        let count = readable_wallet(ctx, wallet_id).await?.0.last_seq;
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        Ok(operations_connection(ctx, wallet_id, count, args, filter).await?)
    }
}

#[derive(InputObject)]
pub struct DepositInput {
    pub wallet_id: Id,
    /// Greater than zero, at most two decimals, at most 1000000000.00.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
    /// The application's own references (at most 16), shown on the
    /// DEPOSIT row; part of what a retry must repeat.
    pub metadata: Option<Vec<MetadataInput>>,
}

#[derive(InputObject)]
pub struct WithdrawInput {
    pub wallet_id: Id,
    /// Greater than zero, at most two decimals; within the wallet's own
    /// money (`balance - heldBalance`: credit is not paid out).
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
    pub description: Option<String>,
    /// The application's own references (at most 16), shown on the
    /// WITHDRAWAL row; part of what a retry must repeat.
    pub metadata: Option<Vec<MetadataInput>>,
}

/// Money that entered (`deposit`) or left (`withdraw`) a wallet: both are
/// the operator's, who reads every wallet.
macro_rules! wallet_operation_payload {
    ($name:ident, $row:literal) => {
        #[derive(SimpleObject)]
        #[graphql(complex)]
        pub struct $name {
            #[graphql(skip)]
            pub operation: operation::Model,
            #[graphql(skip)]
            pub wallet: wallet::Model,
            #[graphql(flatten)]
            pub changed: Changed,
        }

        #[ComplexObject]
        impl $name {
            #[doc = $row]
            async fn operation(&self) -> Operation {
                Operation(self.operation.clone())
            }

            /// The wallet as the operation left it.
            async fn wallet(&self) -> Wallet {
                Wallet(self.wallet.clone())
            }
        }
    };
}

wallet_operation_payload!(DepositPayload, "The DEPOSIT entry in the wallet's history.");
wallet_operation_payload!(
    WithdrawPayload,
    "The WITHDRAWAL entry in the wallet's history."
);

#[derive(Default)]
pub struct WalletsMutation;

#[Object]
impl WalletsMutation {
    /// Puts money into a wallet (operator only).
    async fn deposit(
        &self,
        ctx: &Context<'_>,
        input: DepositInput,
    ) -> Result<Option<DepositPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let request = DepositRequest {
                    wallet_id: input.wallet_id.0,
                    amount: amount(input.amount)?,
                    description: input.description,
                    metadata: metadata::parse(input.metadata)?,
                    idempotency_key: input.idempotency_key,
                };
                let outcome = counted("deposit", ledger(ctx)?.deposit(caller, request).await)?;
                Ok(DepositPayload {
                    changed: Changed::visible(caller, outcome.changes),
                    operation: outcome.operation,
                    wallet: outcome.wallet,
                })
            }
            .await,
        )
    }

    /// Takes money out of a wallet to an outside account (operator only):
    /// a WITHDRAWAL row, within the wallet's own money (`balance -
    /// heldBalance`; a credit line is not paid out).
    async fn withdraw(
        &self,
        ctx: &Context<'_>,
        input: WithdrawInput,
    ) -> Result<Option<WithdrawPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let request = WithdrawRequest {
                    wallet_id: input.wallet_id.0,
                    amount: amount(input.amount)?,
                    description: input.description,
                    metadata: metadata::parse(input.metadata)?,
                    idempotency_key: input.idempotency_key,
                };
                let outcome = counted("withdraw", ledger(ctx)?.withdraw(caller, request).await)?;
                Ok(WithdrawPayload {
                    changed: Changed::visible(caller, outcome.changes),
                    operation: outcome.operation,
                    wallet: outcome.wallet,
                })
            }
            .await,
        )
    }
}
