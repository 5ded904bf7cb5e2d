//! Clients: who they are, signing up (`createClient`), and `me`.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use entity::{client, wallet};
use uuid::Uuid;

use super::context::{answer, caller, ledger, loader, store};
use super::loaders::{ClientId, WalletId, WalletOfClient};
use super::node::node_id;
use super::scalars::{Id, Timestamp};
use super::wallets::Wallet;
use crate::domain::auth::Caller;
use crate::domain::error::AppError;
use crate::store::reads;

/// A client of the service: its row, or for `me` only what the caller's
/// token already told (its id and its wallet's), the row being read only
/// if a field needs it. So `me { id wallet { balance } }` costs one
/// lookup, the wallet's, by id.
pub enum Client {
    Row(client::Model),
    Caller { id: Uuid, wallet_id: Uuid },
}

impl Client {
    fn client_id(&self) -> Uuid {
        match self {
            Client::Row(row) => row.id,
            Client::Caller { id, .. } => *id,
        }
    }

    /// The row, read (once per request, batched) if not at hand. The
    /// token proved it exists: a replica that has not replayed it yet
    /// (a client created a moment ago) is not the last word.
    async fn row(&self, ctx: &Context<'_>) -> Result<std::borrow::Cow<'_, client::Model>> {
        let id = match self {
            Client::Row(row) => return Ok(std::borrow::Cow::Borrowed(row)),
            Client::Caller { id, .. } => *id,
        };
        let found = loader(ctx)?
            .load_one(ClientId(id))
            .await
            .map_err(AppError::from)?;
        let found = match found {
            Some(row) => Some(row),
            None => reads::clients_by_ids(store(ctx)?.db(), &[id])
                .await
                .map_err(AppError::from)?
                .pop(),
        };
        Ok(std::borrow::Cow::Owned(
            found.ok_or(AppError::NotFound("client"))?,
        ))
    }
}

#[Object]
impl Client {
    /// Globally unique (a UUID): the `Node` id.
    pub async fn id(&self) -> ID {
        node_id(self.client_id())
    }

    async fn name(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(self.row(ctx).await?.name.clone())
    }

    async fn email(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(self.row(ctx).await?.email.clone())
    }

    async fn created_at(&self, ctx: &Context<'_>) -> Result<Timestamp> {
        Ok(Timestamp(self.row(ctx).await?.created_at))
    }

    /// The client's one wallet.
    async fn wallet(&self, ctx: &Context<'_>) -> Result<Wallet> {
        let loader = loader(ctx)?;
        let wallet = match self {
            Client::Caller { wallet_id, .. } => {
                let found =
                    (loader.load_one(WalletId(*wallet_id)).await).map_err(AppError::from)?;
                match found {
                    Some(wallet) => Some(wallet),
                    // As for the row: the token proved the wallet exists.
                    None => reads::wallets_by_ids(store(ctx)?.db(), &[*wallet_id])
                        .await
                        .map_err(AppError::from)?
                        .pop(),
                }
            }
            Client::Row(row) => {
                (loader.load_one(WalletOfClient(row.id)).await).map_err(AppError::from)?
            }
        };
        Ok(Wallet(wallet.ok_or(AppError::NotFound("wallet"))?))
    }
}

async fn load_client(ctx: &Context<'_>, id: Uuid) -> Result<client::Model> {
    Ok(loader(ctx)?
        .load_one(ClientId(id))
        .await
        .map_err(AppError::from)?
        .ok_or(AppError::NotFound("client"))?)
}

pub async fn client_by_id(ctx: &Context<'_>, id: Uuid) -> Result<Client> {
    Ok(Client::Row(load_client(ctx, id).await?))
}

#[derive(InputObject)]
pub struct CreateClientInput {
    pub name: String,
    pub email: Option<String>,
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
        Client::Row(self.client.clone())
    }

    async fn wallet(&self) -> Wallet {
        // createClient is anonymous, yet its caller owns what it created.
        Wallet(self.wallet.clone())
    }
}

#[derive(Default)]
pub struct ClientsQuery;

#[Object]
impl ClientsQuery {
    /// The calling client; null for the operator.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<Client>> {
        match caller(ctx)? {
            Caller::Anonymous => Err(AppError::Unauthenticated.into()),
            Caller::Operator => Ok(None),
            // The token named the client and its wallet: clients are never
            // deleted, so nothing needs reading until a field asks.
            Caller::Client {
                client_id,
                wallet_id,
            } => Ok(Some(Client::Caller {
                id: *client_id,
                wallet_id: *wallet_id,
            })),
        }
    }

    /// A client: the caller itself, or any for the operator.
    async fn client(&self, ctx: &Context<'_>, id: Id) -> Result<Client> {
        caller(ctx)?.require_read(id.0)?;
        client_by_id(ctx, id.0).await
    }
}

#[derive(Default)]
pub struct ClientsMutation;

#[Object]
impl ClientsMutation {
    /// Creates a client with an empty wallet. Needs no token; returns the
    /// client's own token, which is never shown again.
    async fn create_client(
        &self,
        ctx: &Context<'_>,
        input: CreateClientInput,
    ) -> Result<Option<CreateClientPayload>> {
        answer(
            async {
                let created = ledger(ctx)?
                    .create_client(&input.name, input.email.as_deref())
                    .await?;
                Ok(CreateClientPayload {
                    client: created.client,
                    wallet: created.wallet,
                    token: created.token,
                })
            }
            .await,
        )
    }
}
