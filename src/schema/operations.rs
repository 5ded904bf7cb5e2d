//! A wallet's history: its operations, their kinds, and paging through
//! them with filters.

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};
use entity::operation;
use uuid::Uuid;

use super::context::{
    linked_transfer, loader, max_page_size, money, signed_money, store, wallet_by_id,
};
use super::loaders::{OperationAt, OperationId, OperationPage, TransferId};
use super::metadata::{self, MetadataEntry, MetadataFilterInput};
use super::node::node_id;
use super::pagination::PageArgs;
use super::payments::Transfer;
use super::scalars::{Dec, Id, Timestamp};
use super::wallets::{PublicWallet, Wallet};
use crate::domain::cursor::{OperationCursor, cursor_no_longer_valid};
use crate::domain::error::{AppError, AppResult};
use crate::store::reads::{self, OperationFilter};

/// One page of a wallet's history; the caller has been authorized already.
/// Fields of a history page beyond Relay's.
#[derive(SimpleObject)]
pub struct OperationTotals {
    /// How many operations the wallet has (its `operationCount`, read in
    /// O(1)). Null when a filter is given: counting what matches would cost
    /// more than a page does.
    pub total_count: Option<i64>,
}

/// A wallet's history, newest first.
pub type OperationConnection = Connection<String, Operation, OperationTotals>;

/// One page of a wallet's history; the caller may read the wallet, whose
/// stored `operationCount` is `count`.
pub async fn operations_connection(
    ctx: &Context<'_>,
    wallet_id: Uuid,
    count: i64,
    args: PageArgs,
    filter: Option<OperationFilterInput>,
) -> AppResult<OperationConnection> {
    let cursors = [
        ("after", args.after.clone()),
        ("before", args.before.clone()),
    ];
    let page = args.parse(max_page_size(ctx), |cursor| {
        OperationCursor::decode_for(cursor, wallet_id).map(|c| c.seq)
    })?;
    let totals = OperationTotals {
        total_count: filter.is_none().then_some(count),
    };
    let filter = filter
        .map(OperationFilter::try_from)
        .transpose()?
        .unwrap_or_default();
    let key = OperationPage {
        wallet_id,
        page: page.query.clone(),
        filter,
    };
    let checks = async {
        for (field, cursor) in cursors {
            if let Some(cursor) = cursor {
                let cursor = OperationCursor::decode_for(&cursor, wallet_id)?;
                check_cursor(ctx, field, &cursor).await?;
            }
        }
        AppResult::Ok(())
    };
    let page_rows = async { AppResult::Ok(loader(ctx)?.load_one(key).await?) };
    let (rows, ()) = futures_util::try_join!(page_rows, checks)?;
    Ok(page.connection_with(rows.unwrap_or_default(), cursor_of, Operation, totals))
}

/// Refuses a cursor whose position now holds another operation, or none: a
/// database restored to an earlier moment gives the sequence numbers after
/// it to new operations.
pub async fn check_cursor(
    ctx: &Context<'_>,
    field: &'static str,
    cursor: &OperationCursor,
) -> AppResult<()> {
    let Some(id) = cursor.operation else {
        return Ok(());
    };
    let names = |op: Option<operation::Model>| {
        op.is_some_and(|op| cursor.names(op.wallet_id, op.seq, op.id))
    };
    if names(loader(ctx)?.load_one(OperationId(id)).await?) {
        return Ok(());
    }
    // A replica may not have replayed it yet: the primary decides.
    if names(reads::operation_by_id(store(ctx)?.db(), id).await?) {
        return Ok(());
    }
    Err(cursor_no_longer_valid().for_field(field))
}

/// The cursor of a wallet's position `seq` (its newest operation's): with
/// that operation's id, so that it can be checked later.
pub async fn cursor_at(ctx: &Context<'_>, wallet_id: Uuid, seq: i64) -> AppResult<String> {
    let operation = match seq {
        0 => None,
        _ => {
            let at = loader(ctx)?
                .load_one(OperationAt { wallet_id, seq })
                .await?;
            match at {
                Some(op) => Some(op.id),
                None => reads::operation_at(store(ctx)?.db(), wallet_id, seq)
                    .await?
                    .map(|op| op.id),
            }
        }
    };
    Ok(OperationCursor {
        wallet_id,
        seq,
        operation,
    }
    .encode())
}

fn cursor_of(op: &operation::Model) -> String {
    OperationCursor {
        wallet_id: op.wallet_id,
        seq: op.seq,
        operation: Some(op.id),
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
    /// On the payee's wallet: a hold placed for it. Balance and available
    /// balance are unchanged; `incomingHeldBalanceAfter` rises.
    IncomingHold,
    /// On the payee's wallet: a hold for it ended (captured, voided or
    /// expired); a capture's TRANSFER_IN follows it.
    IncomingHoldRelease,
    /// The operator changed the wallet's credit line: amount 0, balance
    /// unchanged, `availableBalanceAfter` moved by the change.
    CreditLimit,
}

/// Narrows a history: by kind, and by time (`from` inclusive, `to` exclusive).
#[derive(InputObject, Default)]
pub struct OperationFilterInput {
    pub kinds: Option<Vec<OperationKind>>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Only rows showing this exact pair (their transfer's, or a deposit's
    /// or withdrawal's own): one walk of an index of its own, however rare
    /// the pair.
    pub metadata: Option<MetadataFilterInput>,
}

impl TryFrom<OperationFilterInput> for OperationFilter {
    type Error = AppError;

    fn try_from(input: OperationFilterInput) -> AppResult<Self> {
        Ok(OperationFilter {
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
            metadata: metadata::filter(input.metadata)?,
        })
    }
}

/// One entry of a wallet's ledger. Never changes once written.
pub struct Operation(pub operation::Model);

#[Object]
impl Operation {
    /// Globally unique (a UUID): the `Node` id.
    pub async fn id(&self) -> ID {
        node_id(self.0.id)
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
    async fn balance_after(&self) -> Dec {
        signed_money(self.0.balance_after)
    }

    /// The wallet's available balance (balance - held + credit limit)
    /// right after it.
    async fn available_balance_after(&self) -> Dec {
        signed_money(self.0.available_after())
    }

    /// The wallet's incoming held balance right after it; null on rows
    /// written before incoming holds were kept.
    async fn incoming_held_balance_after(&self) -> Result<Option<Dec>> {
        Ok(self.0.incoming_held_after.map(money).transpose()?)
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

    /// The application's own references: its transfer's (both parties see
    /// them), or a deposit's or withdrawal's own. In key order.
    async fn metadata(&self, ctx: &Context<'_>) -> Result<Vec<MetadataEntry>> {
        let Some(transfer_id) = self.0.transfer_id.filter(|_| self.0.metadata.is_none()) else {
            return Ok(metadata::entries(self.0.metadata.as_deref()));
        };
        let transfer = loader(ctx)?
            .load_one(TransferId(transfer_id))
            .await
            .map_err(AppError::from)?;
        Ok(metadata::entries(
            transfer.as_ref().and_then(|t| t.metadata.as_deref()),
        ))
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
        Ok(linked_transfer(ctx, self.0.transfer_id).await?)
    }
}
