use sea_orm::entity::prelude::*;
use serde::Serialize;

/// A caller's idempotency key and the result it stands for.
/// `scope` names the caller (`client:<id>` or `operator`); `fingerprint`
/// describes the request, so a reused key with other parameters is caught.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "idempotency_key")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub fingerprint: String,
    pub transfer_id: Option<Uuid>,
    pub operation_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
