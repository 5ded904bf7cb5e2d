use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result};

use super::loaders::ClientId;
use super::pagination::PageArgs;
use super::scalars::Id;
use super::types::{
    Client, Operation, OperationFilterInput, Transfer, Wallet, caller, loader, max_page_size,
    operations_connection, readable_transfer, readable_wallet, store,
};
use crate::domain::auth::Caller;
use crate::domain::cursor::WalletCursor;
use crate::domain::error::AppError;
use crate::store::reads;

pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    /// The calling client; null for the operator.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<Client>> {
        match caller(ctx)? {
            Caller::Anonymous => Err(AppError::Unauthenticated.into()),
            Caller::Operator => Ok(None),
            Caller::Client { client_id, .. } => Ok(Some(client_by_id(ctx, *client_id).await?)),
        }
    }

    /// A client: the caller itself, or any for the operator.
    async fn client(&self, ctx: &Context<'_>, id: Id) -> Result<Client> {
        caller(ctx)?.require_read(id.0)?;
        client_by_id(ctx, id.0).await
    }

    /// A wallet: the caller's own, or any for the operator.
    async fn wallet(&self, ctx: &Context<'_>, id: Id) -> Result<Wallet> {
        Ok(readable_wallet(ctx, id.0).await?)
    }

    /// A transfer: for its payer, its payee, or the operator.
    async fn transfer(&self, ctx: &Context<'_>, id: Id) -> Result<Transfer> {
        Ok(readable_transfer(ctx, id.0).await?)
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
        let store = store(ctx)?;
        let rows = reads::wallet_page(store.db(), owner, &page.query)
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
    ) -> Result<Connection<String, Operation>> {
        let wallet_id = wallet_id.0;
        readable_wallet(ctx, wallet_id).await?;
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        Ok(operations_connection(ctx, wallet_id, args, filter).await?)
    }
}

async fn client_by_id(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Client> {
    let client = loader(ctx)?
        .load_one(ClientId(id))
        .await
        .map_err(AppError::from)?
        .ok_or(AppError::NotFound("client"))?;
    Ok(Client(client))
}
