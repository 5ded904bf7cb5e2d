//! Relay's object identification: every object a client caches by id
//! (`Client`, `Wallet`, `Transfer`, `Operation`) is a `Node`, and
//! `node(id:)` / `nodes(ids:)` fetch any of them again, which is what
//! Relay's `@refetchable` and normalised caches build on.
//!
//! Ids stay the UUID strings they always were (the four tables never share
//! one), so a node's type is found by looking the id up in each, batched
//! with the request's other lookups. Unknown ids and ids the caller may not
//! read both answer null: `node` never tells whether something exists.

use async_graphql::{Context, ID, Interface, Object, Result};
use futures_util::future::try_join_all;
use uuid::Uuid;

use super::clients::Client;
use super::context::{caller, loader, max_page_size};
use super::loaders::{ClientId, OperationId, TransferId, WalletId};
use super::operations::Operation;
use super::payments::Transfer;
use super::wallets::Wallet;
use crate::domain::error::{AppError, AppResult};

#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "Globally unique (a UUID)."))]
pub enum Node {
    Client(Client),
    Wallet(Wallet),
    Transfer(Transfer),
    Operation(Operation),
}

/// The `ID` of a stored row: its UUID, as text.
pub fn node_id(id: Uuid) -> ID {
    ID(id.to_string())
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by its `id`; null when there is none or the caller may
    /// not read it (the two are not told apart).
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        caller(ctx)?.require_authenticated()?;
        Ok(find(ctx, &id).await?)
    }

    /// Objects by id, in the order asked (null where `node` would be); at
    /// most `MAX_PAGE_SIZE` ids.
    #[graphql(complexity = "ids.len().max(1) * child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        caller(ctx)?.require_authenticated()?;
        let max = max_page_size(ctx);
        if ids.len() > max {
            let message = format!("`ids` holds at most {max} ids");
            return Err(AppError::invalid_field("ids", message).into());
        }
        Ok(try_join_all(ids.iter().map(|id| find(ctx, id))).await?)
    }
}

/// The readable object with this id, if there is one.
async fn find(ctx: &Context<'_>, id: &ID) -> AppResult<Option<Node>> {
    // A malformed id names nothing.
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let caller = caller(ctx)?;
    let loader = loader(ctx)?;
    let (wallet, client, transfer, operation) = tokio::join!(
        loader.load_one(WalletId(id)),
        loader.load_one(ClientId(id)),
        loader.load_one(TransferId(id)),
        loader.load_one(OperationId(id)),
    );
    if let Some(wallet) = wallet? {
        return Ok(caller
            .can_read(wallet.client_id)
            .then_some(Node::Wallet(Wallet(wallet))));
    }
    if let Some(client) = client? {
        return Ok(caller
            .can_read(client.id)
            .then_some(Node::Client(Client::Row(client))));
    }
    if let Some(transfer) = transfer? {
        let party = caller.require_party(Some((transfer.from_wallet_id, transfer.to_wallet_id)));
        return Ok(party.is_ok().then_some(Node::Transfer(Transfer(transfer))));
    }
    if let Some(operation) = operation? {
        let wallet = loader.load_one(WalletId(operation.wallet_id)).await?;
        let readable = wallet.is_some_and(|w| caller.can_read(w.client_id));
        return Ok(readable.then_some(Node::Operation(Operation(operation))));
    }
    Ok(None)
}
