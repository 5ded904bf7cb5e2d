//! Clients: who they are, signing up (`createClient`), and `me`.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, Result, SimpleObject};
use entity::{client, wallet};
use uuid::Uuid;

use super::context::{answer, caller, ledger, loader};
use super::loaders::{ClientId, WalletOfClient};
use super::node::node_id;
use super::scalars::{Id, Timestamp};
use super::wallets::Wallet;
use crate::domain::auth::Caller;
use crate::domain::error::AppError;

/// A client of the service.
pub struct Client(pub client::Model);

#[Object]
impl Client {
    /// Globally unique (a UUID): the `Node` id.
    pub async fn id(&self) -> ID {
        node_id(self.0.id)
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

pub async fn client_by_id(ctx: &Context<'_>, id: Uuid) -> Result<Client> {
    let client = loader(ctx)?
        .load_one(ClientId(id))
        .await
        .map_err(AppError::from)?
        .ok_or(AppError::NotFound("client"))?;
    Ok(Client(client))
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
        Client(self.client.clone())
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
            Caller::Client { client_id, .. } => Ok(Some(client_by_id(ctx, *client_id).await?)),
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
