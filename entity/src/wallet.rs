use sea_orm::entity::prelude::*;

/// A client's wallet. `balance` is in cents; `last_seq` is the sequence number
/// of the wallet's newest operation (0 before any), advanced by the same UPDATE
/// that changes the balance. `held` is the sum of the wallet's open holds as
/// payer (`open_holds` of them): `balance - held + credit_limit` is what it
/// may spend (see `available`).
/// `incoming_held` is the sum of the open holds to it as payee: money
/// promised to it, not yet its own.
/// Whether money may move: `Frozen` lets nothing out (money may still
/// arrive), `Closed` nothing in or out, for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum WalletStatus {
    #[sea_orm(string_value = "ACTIVE")]
    Active,
    #[sea_orm(string_value = "FROZEN")]
    Frozen,
    #[sea_orm(string_value = "CLOSED")]
    Closed,
}

impl WalletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WalletStatus::Active => "ACTIVE",
            WalletStatus::Frozen => "FROZEN",
            WalletStatus::Closed => "CLOSED",
        }
    }
}

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
    pub status: WalletStatus,
    /// The operator's limits on what leaves the wallet, in cents (count for
    /// `daily_outgoing_count`); NULL: no limit.
    pub max_transfer_amount: Option<i64>,
    pub daily_outgoing_amount: Option<i64>,
    pub daily_outgoing_count: Option<i64>,
    /// What left the wallet on UTC day `outgoing_day` (days since
    /// 1970-01-01): the daily limits' use. Another day's counts are zero.
    pub outgoing_day: i64,
    pub outgoing_today: i64,
    pub outgoing_count_today: i64,
    /// How far below zero the balance may go, in cents (0: not at all).
    pub credit_limit: i64,
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

/// The UTC day of `at`, as `outgoing_day` counts days (since 1970-01-01).
pub fn utc_day(at: DateTimeUtc) -> i64 {
    at.timestamp().div_euclid(86_400)
}

impl Model {
    /// What left the wallet on UTC day `day` (amount, count): its counts if
    /// they are that day's, else nothing.
    pub fn outgoing_on(&self, day: i64) -> (i64, i64) {
        match self.outgoing_day == day {
            true => (self.outgoing_today, self.outgoing_count_today),
            false => (0, 0),
        }
    }

    /// What the wallet may spend: `balance - held + credit_limit`. Below
    /// zero only when its line was lowered under what it uses.
    pub fn available(&self) -> i64 {
        self.balance - self.held + self.credit_limit
    }

    /// What it may withdraw: credit is not paid out.
    pub fn own_available(&self) -> i64 {
        self.balance - self.held
    }

    /// A new client's wallet: empty, ACTIVE, without limits.
    pub fn empty(id: Uuid, client_id: Uuid, at: DateTimeUtc) -> Model {
        Model {
            id,
            client_id,
            currency: "USD".to_owned(),
            balance: 0,
            held: 0,
            open_holds: 0,
            incoming_held: 0,
            last_seq: 0,
            created_at: at,
            updated_at: at,
            status: WalletStatus::Active,
            max_transfer_amount: None,
            daily_outgoing_amount: None,
            daily_outgoing_count: None,
            outgoing_day: 0,
            outgoing_today: 0,
            outgoing_count_today: 0,
            credit_limit: 0,
        }
    }
}

impl ActiveModelBehavior for ActiveModel {}
