//! GraphQL object types. Each wraps a stored row; anything it links to is
//! fetched through the request's loaders.
//!
//! The types say what a caller can see: a `Wallet` (balance, owner, history)
//! is only ever built for a caller who may read it, and a link to another
//! client's wallet (a counterparty, a transfer's other side) is a
//! `PublicWallet`, which carries only the id. So asking for what one may not
//! see is refused at validation, before anything runs or moves.

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject};
use entity::{client, operation, transfer, wallet};
use uuid::Uuid;

use super::loaders::{
    ClientId, OperationPage, RefundsOf, RequestLoader, TransferId, WalletId, WalletOfClient,
};
use super::pagination::PageArgs;
use super::scalars::{Dec, Id, Timestamp};
use crate::domain::auth::Caller;
use crate::domain::cursor::{OperationCursor, TransferCursor};
use crate::domain::error::{AppError, AppResult};
use crate::domain::money::Money;
use crate::store::Store;
use crate::store::reads::{self, OperationFilter};

pub fn caller<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    ctx.data::<Caller>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("request has no caller")))
}

pub fn store<'a>(ctx: &Context<'a>) -> AppResult<&'a Store> {
    ctx.data::<Store>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("schema has no store")))
}

pub fn ledger<'a>(ctx: &Context<'a>) -> AppResult<&'a crate::ledger::Ledger> {
    ctx.data::<crate::ledger::Ledger>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("schema has no ledger")))
}

/// The configured largest page (the default when the schema has none).
pub fn max_page_size(ctx: &Context<'_>) -> usize {
    ctx.data_opt::<super::MaxPageSize>().map_or(100, |m| m.0)
}

pub fn loader<'a>(ctx: &Context<'a>) -> AppResult<&'a RequestLoader> {
    ctx.data::<RequestLoader>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("request has no loader")))
}

pub async fn load_wallet(ctx: &Context<'_>, id: Uuid) -> AppResult<Option<wallet::Model>> {
    Ok(loader(ctx)?.load_one(WalletId(id)).await?)
}

/// A wallet that must exist (it is referenced by a stored row), for a
/// caller already allowed to read it.
async fn wallet_by_id(ctx: &Context<'_>, id: Uuid) -> AppResult<Wallet> {
    load_wallet(ctx, id)
        .await?
        .map(Wallet)
        .ok_or(AppError::NotFound("wallet"))
}

fn money(cents: i64) -> AppResult<Dec> {
    Money::from_cents(cents)
        .map(Dec::from)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("negative amount in storage: {cents}")))
}

/// A client of the service.
pub struct Client(pub client::Model);

#[Object]
impl Client {
    async fn id(&self) -> Id {
        Id(self.0.id)
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }

    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }

    /// The client's one wallet.
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        let wallet = loader(ctx)?
            .load_one(WalletOfClient(self.0.id))
            .await
            .map_err(AppError::from)?
            .ok_or(AppError::NotFound("wallet"))?;
        Ok(Wallet(wallet))
    }
}

/// A wallet holding USD, as its owner (or the operator) sees it. Built only
/// where the caller may read it: its own wallet, or any for the operator.
pub struct Wallet(pub wallet::Model);

/// Another client's wallet, as a counterparty sees it: only its id.
#[derive(SimpleObject)]
pub struct PublicWallet {
    pub id: Id,
}

impl PublicWallet {
    pub fn new(id: Uuid) -> PublicWallet {
        PublicWallet { id: Id(id) }
    }
}

#[Object]
impl Wallet {
    async fn id(&self) -> Id {
        Id(self.0.id)
    }

    async fn currency(&self) -> &str {
        &self.0.currency
    }

    /// The posted balance, always with two decimals.
    async fn balance(&self) -> Result<Dec> {
        Ok(money(self.0.balance)?)
    }

    /// The sum of the wallet's open holds as payer (pending transfers).
    async fn held_balance(&self) -> Result<Dec> {
        Ok(money(self.0.held)?)
    }

    /// What the wallet may spend: `balance - heldBalance`. Transfers,
    /// withdrawals, refunds and new holds spend only this.
    async fn available_balance(&self) -> Result<Dec> {
        Ok(money(self.0.balance - self.0.held)?)
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
        let rows = reads::pending_transfers(
            store(ctx)?.db(),
            self.0.id,
            page.query.after,
            page.query.fetch,
        )
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
        let cents = reads::balance_before(store(ctx)?.db(), self.0.id, at.0)
            .await
            .map_err(AppError::from)?;
        Ok(money(cents)?)
    }

    /// Number of operations in the wallet's history (the newest one's sequence).
    async fn operation_count(&self) -> i64 {
        self.0.last_seq
    }

    /// The position of the wallet's newest operation, consistent with
    /// `balance`: pass it as `after` to `operationCreated` to hear exactly
    /// what happens from this snapshot on.
    async fn cursor(&self) -> String {
        OperationCursor {
            wallet_id: self.0.id,
            seq: self.0.last_seq,
        }
        .encode()
    }

    async fn client(&self, ctx: &Context<'_>) -> Result<Client> {
        let client = loader(ctx)?
            .load_one(ClientId(self.0.client_id))
            .await
            .map_err(AppError::from)?
            .ok_or(AppError::NotFound("client"))?;
        Ok(Client(client))
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
    ) -> Result<Connection<String, Operation>> {
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        Ok(operations_connection(ctx, self.0.id, args, filter).await?)
    }
}

/// One page of a wallet's history; the caller has been authorized already.
pub async fn operations_connection(
    ctx: &Context<'_>,
    wallet_id: Uuid,
    args: PageArgs,
    filter: Option<OperationFilterInput>,
) -> AppResult<Connection<String, Operation>> {
    let page = args.parse(max_page_size(ctx), |cursor| {
        OperationCursor::decode_for(cursor, wallet_id)
    })?;
    let filter = filter.map(OperationFilter::from).unwrap_or_default();
    let key = OperationPage {
        wallet_id,
        page: page.query.clone(),
        filter,
    };
    let rows = loader(ctx)?.load_one(key).await?.unwrap_or_default();
    Ok(page.connection(rows, cursor_of, Operation))
}

fn cursor_of(op: &operation::Model) -> String {
    OperationCursor {
        wallet_id: op.wallet_id,
        seq: op.seq,
    }
    .encode()
}

/// What an operation did to its wallet.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "operation::OperationKind")]
pub enum OperationKind {
    Deposit,
    TransferOut,
    TransferIn,
    /// Money leaving the system to an outside account.
    Withdrawal,
    /// Money set aside for a pending transfer: the balance is unchanged,
    /// the available balance lowered.
    Hold,
    /// A hold given back, whole, on capture, void or expiry.
    HoldRelease,
}

/// Why money moved.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "transfer::TransferKind")]
pub enum TransferKind {
    Payment,
    /// Money paid back on a payment (`refundOf`).
    Refund,
}

/// Where a transfer is: PENDING (held, until captured, voided or
/// expired), then POSTED, VOIDED or EXPIRED for good. A one-phase
/// transfer is POSTED from the start.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "transfer::TransferStatus")]
pub enum TransferStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// Narrows a history: by kind, and by time (`from` inclusive, `to` exclusive).
#[derive(InputObject, Default)]
pub struct OperationFilterInput {
    pub kinds: Option<Vec<OperationKind>>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl From<OperationFilterInput> for OperationFilter {
    fn from(input: OperationFilterInput) -> Self {
        OperationFilter {
            kinds: input.kinds.map(|kinds| {
                let mut kinds: Vec<operation::OperationKind> =
                    kinds.into_iter().map(Into::into).collect();
                // A canonical order, so equal filters batch together.
                kinds.sort_by_key(|k| *k as u8);
                kinds.dedup();
                kinds
            }),
            from: input.from.map(|t| t.0),
            to: input.to.map(|t| t.0),
        }
    }
}

/// One entry of a wallet's ledger. Never changes once written.
pub struct Operation(pub operation::Model);

#[Object]
impl Operation {
    async fn id(&self) -> Id {
        Id(self.0.id)
    }

    /// Position of this operation in its wallet's history; usable as `after`
    /// or `before` in `operations`.
    async fn cursor(&self) -> String {
        cursor_of(&self.0)
    }

    /// 1 for a wallet's first operation, then 2, 3... without gaps.
    async fn sequence(&self) -> i64 {
        self.0.seq
    }

    async fn kind(&self) -> OperationKind {
        self.0.kind.into()
    }

    async fn amount(&self) -> Result<Dec> {
        Ok(money(self.0.amount)?)
    }

    /// The wallet's balance right after this operation.
    async fn balance_after(&self) -> Result<Dec> {
        Ok(money(self.0.balance_after)?)
    }

    /// The wallet's available balance (balance - held) right after it.
    async fn available_balance_after(&self) -> Result<Dec> {
        Ok(money(self.0.available_after())?)
    }

    /// The request's description. A transfer's is stored once, on the
    /// transfer, and read from there for both legs.
    async fn description(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let Some(transfer_id) = self.0.transfer_id.filter(|_| self.0.description.is_none()) else {
            return Ok(self.0.description.clone());
        };
        let transfer = loader(ctx)?
            .load_one(TransferId(transfer_id))
            .await
            .map_err(AppError::from)?;
        Ok(transfer.and_then(|t| t.description))
    }

    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }

    async fn wallet_id(&self) -> Id {
        Id(self.0.wallet_id)
    }

    async fn wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.0.wallet_id).await?)
    }

    /// The other wallet of a transfer or hold; null for a deposit or a
    /// withdrawal.
    async fn counterparty(&self) -> Option<PublicWallet> {
        self.0.counterparty_wallet_id.map(PublicWallet::new)
    }

    async fn transfer(&self, ctx: &Context<'_>) -> Result<Option<Transfer>> {
        let Some(id) = self.0.transfer_id else {
            return Ok(None);
        };
        let transfer = loader(ctx)?
            .load_one(TransferId(id))
            .await
            .map_err(AppError::from)?;
        Ok(transfer.map(Transfer))
    }
}

/// A movement of money between two wallets.
pub struct Transfer(pub transfer::Model);

#[Object]
#[allow(clippy::wrong_self_convention)]
impl Transfer {
    async fn id(&self) -> Id {
        Id(self.0.id)
    }

    /// What was sent, or authorised; never changes.
    async fn amount(&self) -> Result<Dec> {
        Ok(money(self.0.amount)?)
    }

    async fn kind(&self) -> TransferKind {
        self.0.kind.into()
    }

    async fn status(&self) -> TransferStatus {
        self.0.status.into()
    }

    /// What moved: null until POSTED (a one-phase transfer: `amount`).
    async fn captured_amount(&self) -> Result<Option<Dec>> {
        Ok(self.0.captured().map(money).transpose()?)
    }

    /// The sum of this payment's refunds so far.
    async fn refunded_amount(&self) -> Result<Dec> {
        Ok(money(self.0.refunded_amount)?)
    }

    /// A PENDING transfer's deadline: captured or voided before it, or it
    /// expires.
    async fn expires_at(&self) -> Option<Timestamp> {
        self.0.expires_at.map(Timestamp)
    }

    /// When it reached its final status; null while PENDING.
    async fn settled_at(&self) -> Option<Timestamp> {
        self.0.settled().map(Timestamp)
    }

    /// The payment a REFUND pays back.
    async fn refund_of(&self, ctx: &Context<'_>) -> Result<Option<Transfer>> {
        let Some(id) = self.0.refund_of else {
            return Ok(None);
        };
        let transfer = loader(ctx)?
            .load_one(TransferId(id))
            .await
            .map_err(AppError::from)?;
        Ok(transfer.map(Transfer))
    }

    /// This payment's refunds, oldest first.
    async fn refunds(&self, ctx: &Context<'_>) -> Result<Vec<Transfer>> {
        let refunds = loader(ctx)?
            .load_one(RefundsOf(self.0.id))
            .await
            .map_err(AppError::from)?
            .unwrap_or_default();
        Ok(refunds.into_iter().map(Transfer).collect())
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn created_at(&self) -> Timestamp {
        Timestamp(self.0.created_at)
    }

    async fn from_wallet_id(&self) -> Id {
        Id(self.0.from_wallet_id)
    }

    async fn to_wallet_id(&self) -> Id {
        Id(self.0.to_wallet_id)
    }

    /// The payer (read its details with `wallet(id:)` if it is yours).
    async fn from_wallet(&self) -> PublicWallet {
        PublicWallet::new(self.0.from_wallet_id)
    }

    /// The payee (read its details with `wallet(id:)` if it is yours).
    async fn to_wallet(&self) -> PublicWallet {
        PublicWallet::new(self.0.to_wallet_id)
    }
}

/// A new client, its wallet, and its API token.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct CreateClientPayload {
    #[graphql(skip)]
    pub client: client::Model,
    #[graphql(skip)]
    pub wallet: wallet::Model,
    /// The client's secret API token: shown only here, stored only as a hash.
    pub token: String,
}

#[ComplexObject]
impl CreateClientPayload {
    async fn client(&self) -> Client {
        Client(self.client.clone())
    }

    async fn wallet(&self) -> Wallet {
        // createClient is anonymous, yet its caller owns what it created.
        Wallet(self.wallet.clone())
    }
}

pub struct DepositPayload {
    pub operation: operation::Model,
    pub wallet: wallet::Model,
}

#[Object]
impl DepositPayload {
    /// The DEPOSIT entry in the wallet's history.
    async fn operation(&self) -> Operation {
        Operation(self.operation.clone())
    }

    /// The wallet as it is now (deposits are the operator's, who reads all).
    async fn wallet(&self) -> Wallet {
        Wallet(self.wallet.clone())
    }
}

pub struct WithdrawPayload {
    pub operation: operation::Model,
    pub wallet: wallet::Model,
}

#[Object]
impl WithdrawPayload {
    /// The WITHDRAWAL entry in the wallet's history.
    async fn operation(&self) -> Operation {
        Operation(self.operation.clone())
    }

    /// The wallet as it is now (withdrawals are the operator's).
    async fn wallet(&self) -> Wallet {
        Wallet(self.wallet.clone())
    }
}

pub struct TransferPayload {
    pub transfer: transfer::Model,
    pub debit: operation::Model,
}

#[Object]
#[allow(clippy::wrong_self_convention)]
impl TransferPayload {
    async fn transfer(&self) -> Transfer {
        Transfer(self.transfer.clone())
    }

    /// The payer's TRANSFER_OUT entry.
    async fn operation(&self) -> Operation {
        Operation(self.debit.clone())
    }

    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.transfer.from_wallet_id).await?)
    }

    /// The payee: another client's wallet, of which only the id is visible.
    async fn to_wallet(&self) -> PublicWallet {
        PublicWallet::new(self.transfer.to_wallet_id)
    }
}

/// A new PENDING transfer: its hold is on the caller's wallet.
pub struct AuthorizeTransferPayload(pub transfer::Model);

#[Object]
#[allow(clippy::wrong_self_convention)]
impl AuthorizeTransferPayload {
    async fn transfer(&self) -> Transfer {
        Transfer(self.0.clone())
    }

    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.0.from_wallet_id).await?)
    }
}

/// The payload of a capture or a void: the transfer ended by its payee
/// (or the operator); the payer is another client, the payee the caller.
macro_rules! ended_transfer_payload {
    ($name:ident) => {
        pub struct $name(pub transfer::Model);

        #[Object]
        #[allow(clippy::wrong_self_convention)]
        impl $name {
            async fn transfer(&self) -> Transfer {
                Transfer(self.0.clone())
            }

            /// The payer, of which only the id is visible.
            async fn from_wallet(&self) -> PublicWallet {
                PublicWallet::new(self.0.from_wallet_id)
            }

            /// The payee (the caller's own wallet) as it is now.
            async fn to_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
                Ok(wallet_by_id(ctx, self.0.to_wallet_id).await?)
            }
        }
    };
}

ended_transfer_payload!(CaptureTransferPayload);
ended_transfer_payload!(VoidTransferPayload);

/// A refund: from the original payee (the caller) back to the payer.
pub struct RefundTransferPayload {
    pub refund: transfer::Model,
    pub original: transfer::Model,
}

#[Object]
#[allow(clippy::wrong_self_convention)]
impl RefundTransferPayload {
    /// The new REFUND transfer.
    async fn refund(&self) -> Transfer {
        Transfer(self.refund.clone())
    }

    /// The payment refunded, with its `refundedAmount` raised.
    async fn transfer(&self) -> Transfer {
        Transfer(self.original.clone())
    }

    /// The refund's payer: the payment's payee, the caller's own wallet.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.refund.from_wallet_id).await?)
    }

    /// The refund's payee: the payment's payer (only its id).
    async fn to_wallet(&self) -> PublicWallet {
        PublicWallet::new(self.refund.to_wallet_id)
    }
}

/// One item of a `transferBatch`: its transfer, or why it was refused.
#[derive(SimpleObject)]
pub struct TransferBatchResult {
    /// The item's position in `transfers`.
    pub index: i32,
    pub transfer: Option<Transfer>,
    /// The refusal's code (as `extensions.code` would be); null if it posted.
    pub code: Option<String>,
    pub message: Option<String>,
}

pub struct TransferBatchPayload {
    pub results: Vec<TransferBatchResult>,
    pub from_wallet_id: Uuid,
}

#[Object]
#[allow(clippy::wrong_self_convention)]
impl TransferBatchPayload {
    /// One per item, in input order.
    async fn results(&self) -> &[TransferBatchResult] {
        &self.results
    }

    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.from_wallet_id).await?)
    }
}

/// A transfer the caller may read: its payer, its payee, or the operator.
/// Anyone else is refused the same way whether or not it exists.
pub async fn readable_transfer(ctx: &Context<'_>, id: Uuid) -> AppResult<Transfer> {
    let caller = caller(ctx)?;
    caller.require_authenticated()?;
    let found = loader(ctx)?.load_one(TransferId(id)).await?;
    caller.require_party(found.as_ref().map(|t| (t.from_wallet_id, t.to_wallet_id)))?;
    found.map(Transfer).ok_or(AppError::NotFound("transfer"))
}

/// A wallet the caller may read. A client asking for a wallet that is not
/// its own is refused the same way whether or not that wallet exists.
pub async fn readable_wallet(ctx: &Context<'_>, id: Uuid) -> AppResult<Wallet> {
    let caller = caller(ctx)?;
    caller.require_authenticated()?;
    match load_wallet(ctx, id).await? {
        Some(wallet) => {
            caller.require_read(wallet.client_id)?;
            Ok(Wallet(wallet))
        }
        None if *caller == Caller::Operator => Err(AppError::NotFound("wallet")),
        None => Err(AppError::Forbidden),
    }
}
