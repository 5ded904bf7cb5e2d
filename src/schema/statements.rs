//! `Wallet.statement`: what a wallet's history adds up to between two
//! moments, for audits and account statements. Its lines are the CSV
//! download (`server::statement`).

use async_graphql::{Context, SimpleObject};
use uuid::Uuid;

use super::context::{money, reader, signed_money};
use super::scalars::{Dec, Timestamp};
use crate::domain::error::{AppError, AppResult};
use crate::store::reads;

/// A wallet's history between `from` (inclusive) and `to` (exclusive):
/// `openingBalance + totalIn - totalOut = closingBalance`, always. Rows that
/// change no balance (holds and their ends) count in `operationCount` only.
#[derive(SimpleObject)]
pub struct Statement {
    pub from: Timestamp,
    pub to: Timestamp,
    /// The balance from every operation before `from`.
    pub opening_balance: Dec,
    /// The balance from every operation before `to`.
    pub closing_balance: Dec,
    /// Deposits and transfers in.
    pub total_in: Dec,
    /// Withdrawals and transfers out.
    pub total_out: Dec,
    pub operation_count: i64,
}

pub async fn statement(
    ctx: &Context<'_>,
    wallet_id: Uuid,
    from: Timestamp,
    to: Timestamp,
) -> AppResult<Statement> {
    if from.0 >= to.0 {
        return Err(AppError::invalid_field("to", "to must be after from"));
    }
    let summary = reader(ctx)?
        .read(|db| async move {
            let window = reads::seq_window(&db, wallet_id, from.0, to.0).await?;
            reads::window_summary(&db, wallet_id, window).await
        })
        .await?;
    Ok(Statement {
        from,
        to,
        opening_balance: signed_money(summary.opening),
        closing_balance: signed_money(summary.closing),
        total_in: money(summary.total_in)?,
        total_out: money(summary.total_out)?,
        operation_count: summary.count,
    })
}
