use sea_orm::entity::prelude::*;

/// A client's wallet. `balance` is in cents; `last_seq` is the sequence number
/// of the wallet's newest operation (0 before any), advanced by the same UPDATE
/// that changes the balance. `held` is the sum of the wallet's open holds as
/// payer (`open_holds` of them): `balance - held` is what it may spend.
/// `incoming_held` is the sum of the open holds to it as payee: money
/// promised to it, not yet its own.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "wallet")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub client_id: Uuid,
    pub currency: String,
    pub balance: i64,
    pub held: i64,
    pub open_holds: i32,
    pub incoming_held: i64,
    pub last_seq: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::client::Entity",
        from = "Column::ClientId",
        to = "super::client::Column::Id"
    )]
    Client,
}

impl Related<super::client::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Client.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
