//! Payments: transfers between wallets (`transfer`, `transferBatch`),
//! refunds, and reading a transfer.

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use entity::{operation, transfer};
use uuid::Uuid;

use super::changes::Changed;
use super::context::{
    amount, answer, caller, counted, ledger, linked_transfer, loader, max_page_size, money,
    readable_transfer, readable_wallet, reader, signed_money, wallet_by_id,
};
use super::errors::ErrorCode;
use super::loaders::RefundsOf;
use super::metadata::{self, MetadataEntry, MetadataFilterInput, MetadataInput};
use super::node::node_id;
use super::operations::Operation;
use super::pagination::PageArgs;
use super::scalars::{Dec, Id, Timestamp};
use super::wallets::{PublicWallet, Wallet};
use crate::domain::auth::Caller;
use crate::domain::cursor::TransferCursor;
use crate::domain::error::{AppError, AppResult, FieldStep};
use crate::ledger::{RefundRequest, TransferRequest};
use crate::store::reads::{self, TransferFilter};

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

/// A movement of money between two wallets.
pub struct Transfer(pub transfer::Model);

#[Object]
#[allow(clippy::wrong_self_convention)]
impl Transfer {
    /// Globally unique (a UUID): the `Node` id.
    pub async fn id(&self) -> ID {
        node_id(self.0.id)
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
        Ok(linked_transfer(ctx, self.0.refund_of).await?)
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

    /// The application's own references, in key order; both parties see
    /// them.
    async fn metadata(&self) -> Vec<MetadataEntry> {
        metadata::entries(self.0.metadata.as_deref())
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

#[derive(InputObject)]
pub struct TransferInput {
    pub from_wallet_id: Id,
    pub to_wallet_id: Id,
    /// Greater than zero, at most two decimals, at most 1000000000.00.
    pub amount: Dec,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
    /// The application's own references (at most 16), shown on the
    /// transfer and its ledger rows; part of what a retry must repeat.
    pub metadata: Option<Vec<MetadataInput>>,
}

fn transfer_request(input: TransferInput) -> AppResult<TransferRequest> {
    Ok(TransferRequest {
        from_wallet_id: input.from_wallet_id.0,
        to_wallet_id: input.to_wallet_id.0,
        amount: amount(input.amount)?,
        description: input.description,
        metadata: metadata::parse(input.metadata)?,
        idempotency_key: input.idempotency_key,
    })
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TransferPayload {
    #[graphql(skip)]
    pub transfer: transfer::Model,
    #[graphql(skip)]
    pub debit: operation::Model,
    #[graphql(flatten)]
    pub changed: Changed,
}

#[ComplexObject]
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

#[derive(InputObject)]
pub struct RefundTransferInput {
    /// A POSTED payment.
    pub transfer_id: Id,
    /// At most what is left to refund; all of it when left out.
    pub amount: Option<Dec>,
    /// Makes retries safe: the same key returns the first result.
    pub idempotency_key: String,
    pub description: Option<String>,
    /// The refund's own references (at most 16); the payment keeps its own.
    pub metadata: Option<Vec<MetadataInput>>,
}

#[derive(InputObject)]
pub struct TransferBatchInput {
    /// Up to 1,000 transfers, each out of the caller's own wallet; their
    /// idempotency keys must differ.
    pub transfers: Vec<TransferInput>,
    /// true: all post or none does (a refusal is the failing item's code,
    /// with `extensions.index`). false: each item posts on its own.
    pub atomic: bool,
}

/// A refund: from the original payee (the caller) back to the payer.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct RefundTransferPayload {
    #[graphql(skip)]
    pub refund: transfer::Model,
    #[graphql(skip)]
    pub original: transfer::Model,
    #[graphql(flatten)]
    pub changed: Changed,
}

#[ComplexObject]
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
    /// Why the item was refused (as `extensions.code` would say); null if
    /// it posted.
    pub code: Option<ErrorCode>,
    pub message: Option<String>,
}

#[derive(SimpleObject)]
#[graphql(complex)]
pub struct TransferBatchPayload {
    /// One per item, in input order.
    pub results: Vec<TransferBatchResult>,
    #[graphql(skip)]
    pub from_wallet_id: Uuid,
    #[graphql(flatten)]
    pub changed: Changed,
}

#[ComplexObject]
#[allow(clippy::wrong_self_convention)]
impl TransferBatchPayload {
    /// The payer's wallet (the caller's own) as it is now.
    async fn from_wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        Ok(wallet_by_id(ctx, self.from_wallet_id).await?)
    }
}

/// Which side of a transfer a wallet is on.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferDirection {
    /// Transfers the wallet received (it is the payee).
    Incoming,
    /// Transfers the wallet paid (it is the payer).
    Outgoing,
}

/// Narrows a wallet's transfers; every part left out matches all.
#[derive(InputObject, Default)]
pub struct TransferFilterInput {
    pub statuses: Option<Vec<TransferStatus>>,
    pub kinds: Option<Vec<TransferKind>>,
    pub direction: Option<TransferDirection>,
    /// Only transfers carrying this exact pair: one walk of an index of
    /// its own, however rare the pair.
    pub metadata: Option<MetadataFilterInput>,
}

impl TryFrom<TransferFilterInput> for TransferFilter {
    type Error = AppError;

    fn try_from(input: TransferFilterInput) -> AppResult<Self> {
        Ok(TransferFilter {
            statuses: (input.statuses).map(|s| s.into_iter().map(Into::into).collect()),
            kinds: input.kinds.map(|k| k.into_iter().map(Into::into).collect()),
            incoming: input.direction.map(|d| d == TransferDirection::Incoming),
            metadata: metadata::filter(input.metadata)?,
        })
    }
}

/// What `transfer` would answer now, without moving money.
#[derive(SimpleObject)]
pub struct TransferPreview {
    /// Whether the transfer would post now.
    pub ok: bool,
    /// Why it would be refused (as `extensions.code` would say).
    pub code: Option<ErrorCode>,
    pub message: Option<String>,
    /// The payer's available balance after it, if it would post.
    pub available_balance_after: Option<Dec>,
}

#[derive(Default)]
pub struct PaymentsQuery;

#[Object]
impl PaymentsQuery {
    /// The same checks `transfer` would meet now (authorisation, the
    /// wallets' status, the payer's limits and funds, the payee's balance
    /// limit), against the primary, with nothing locked or written: another
    /// request may still change the answer before a transfer runs. Given
    /// an idempotency key already used, it previews the stored result.
    async fn preview_transfer(
        &self,
        ctx: &Context<'_>,
        input: TransferInput,
    ) -> Result<TransferPreview> {
        let caller = caller(ctx)?;
        let preview = ledger(ctx)?
            .preview_transfer(caller, transfer_request(input))
            .await;
        Ok(match preview {
            Ok(available) => TransferPreview {
                ok: true,
                code: None,
                message: None,
                available_balance_after: Some(signed_money(available)),
            },
            Err(error @ AppError::Internal(_)) => return Err(error.into()),
            Err(error) => TransferPreview {
                ok: false,
                code: Some(error.error_code().into()),
                message: Some(error.to_string()),
                available_balance_after: None,
            },
        })
    }

    /// A transfer: for its payer, its payee, or the operator.
    async fn transfer(&self, ctx: &Context<'_>, id: Id) -> Result<Transfer> {
        Ok(readable_transfer(ctx, id.0).await?)
    }

    /// The transfers a wallet paid or received, newest first (its owner or
    /// the operator). Each page is one walk of an index from its cursor.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "first.or(last).unwrap_or(20).max(1) as usize * child_complexity")]
    async fn transfers(
        &self,
        ctx: &Context<'_>,
        wallet_id: Id,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<TransferFilterInput>,
    ) -> Result<Connection<String, Transfer>> {
        let wallet_id = wallet_id.0;
        readable_wallet(ctx, wallet_id).await?;
        let page = PageArgs {
            first,
            after,
            last,
            before,
        }
        .parse(max_page_size(ctx), TransferCursor::decode)?;
        let filter = filter
            .map(TransferFilter::try_from)
            .transpose()?
            .unwrap_or_default();
        let (query, filter) = (&page.query, &filter);
        let rows = reader(ctx)?
            .read(|db| async move { reads::transfer_page(&db, wallet_id, query, filter).await })
            .await
            .map_err(AppError::from)?;
        Ok(page.connection(
            rows,
            |t| TransferCursor::encode(t.created_at, t.id),
            Transfer,
        ))
    }
}

#[derive(Default)]
pub struct PaymentsMutation;

#[Object]
impl PaymentsMutation {
    /// Moves money from the caller's wallet to another wallet, atomically.
    async fn transfer(
        &self,
        ctx: &Context<'_>,
        input: TransferInput,
    ) -> Result<Option<TransferPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let request = transfer_request(input)?;
                let outcome = counted("transfer", ledger(ctx)?.transfer(caller, request).await)?;
                Ok(TransferPayload {
                    changed: Changed::visible(caller, outcome.changes),
                    transfer: outcome.transfer,
                    debit: outcome.debit,
                })
            }
            .await,
        )
    }

    /// Pays back (part of) a POSTED payment (its payee or the operator): a
    /// new REFUND transfer from the payee to the payer.
    async fn refund_transfer(
        &self,
        ctx: &Context<'_>,
        input: RefundTransferInput,
    ) -> Result<Option<RefundTransferPayload>> {
        answer(
            async {
                let caller = caller(ctx)?;
                let request = RefundRequest {
                    transfer_id: input.transfer_id.0,
                    amount: input.amount.map(amount).transpose()?,
                    description: input.description,
                    metadata: metadata::parse(input.metadata)?,
                    idempotency_key: input.idempotency_key,
                };
                let outcome =
                    counted("refundTransfer", ledger(ctx)?.refund(caller, request).await)?;
                Ok(RefundTransferPayload {
                    changed: Changed::visible(caller, outcome.changes),
                    refund: outcome.refund,
                    original: outcome.original,
                })
            }
            .await,
        )
    }

    /// Up to 1,000 transfers out of the caller's wallet in one request and
    /// one transaction.
    async fn transfer_batch(
        &self,
        ctx: &Context<'_>,
        input: TransferBatchInput,
    ) -> Result<Option<TransferBatchPayload>> {
        answer(transfer_batch(ctx, input).await)
    }
}

async fn transfer_batch(
    ctx: &Context<'_>,
    input: TransferBatchInput,
) -> AppResult<TransferBatchPayload> {
    let caller = caller(ctx)?;
    let from_wallet_id = match caller {
        Caller::Client { wallet_id, .. } => *wallet_id,
        Caller::Anonymous => return Err(AppError::Unauthenticated),
        Caller::Operator => return Err(AppError::Forbidden),
    };
    let atomic = input.atomic;
    let requests: Vec<AppResult<TransferRequest>> =
        input.transfers.into_iter().map(transfer_request).collect();
    let outcomes = ledger(ctx)?
        .transfer_batch(caller, requests, atomic)
        .await
        .map_err(|refused| {
            // The failing item, inside `transfers`: `extensions.index`, and
            // `extensions.field` when it points at one of its values.
            let item = FieldStep::Index(refused.index);
            let error = refused
                .error
                .within(item)
                .within(FieldStep::Name("transfers"));
            AppError::BatchItemRefused {
                index: refused.index,
                error: Box::new(error),
            }
        })?;
    let mut changed = Changed::default();
    let mut results = Vec::with_capacity(outcomes.len());
    for (index, outcome) in outcomes.into_iter().enumerate() {
        crate::metrics::ledger_request(
            "transferBatch",
            outcome.as_ref().map_or_else(AppError::code, |_| "OK"),
        );
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        results.push(match outcome {
            Ok(posted) => {
                changed.append(Changed::visible(caller, posted.changes));
                TransferBatchResult {
                    index,
                    transfer: Some(Transfer(posted.transfer)),
                    code: None,
                    message: None,
                }
            }
            Err(err) => TransferBatchResult {
                index,
                transfer: None,
                code: Some(err.error_code().into()),
                message: Some(err.to_string()),
            },
        });
    }
    Ok(TransferBatchPayload {
        results,
        from_wallet_id,
        changed,
    })
}
