//! Creating a client and its wallet.

use chrono::Utc;
use entity::{client, wallet};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use uuid::Uuid;

use crate::domain::auth::hash_token;
use crate::domain::error::{AppError, AppResult};
use crate::store::{Store, unique_violation_on};

/// A client, its empty wallet, and the client's API token (shown only now).
pub struct NewClient {
    pub client: client::Model,
    pub wallet: wallet::Model,
    pub token: String,
}

/// Creates a client (name and email already checked) with an empty USD
/// wallet in one transaction; `token` is stored as its hash.
pub async fn create_client(
    store: &Store,
    name: String,
    email: Option<String>,
    token: String,
) -> AppResult<NewClient> {
    let now = Utc::now();
    let client_id = Uuid::now_v7();

    let write = store.begin_write().await?;
    let client = client::ActiveModel {
        id: Set(client_id),
        name: Set(name),
        email: Set(email),
        token_hash: Set(hash_token(&token)),
        created_at: Set(now),
    }
    .insert(&write.tx)
    .await;
    let client = match client {
        Ok(client) => client,
        Err(err) if unique_violation_on(&err, "client", "email") => {
            write.rollback().await?;
            return Err(AppError::EmailTaken);
        }
        Err(err) => return Err(err.into()),
    };
    let wallet = wallet::ActiveModel::from(wallet::Model::empty(Uuid::now_v7(), client_id, now))
        .insert(&write.tx)
        .await?;
    write.commit().await?;
    store.note_commit().await;
    Ok(NewClient {
        client,
        wallet,
        token,
    })
}
