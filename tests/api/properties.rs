//! Property tests: whatever a client sends, nothing panics, every refusal
//! has a code, and a refused request changes nothing.

use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Value, json};
use walletql::config::ApiLimits;
use walletql::domain::auth::Caller;
use walletql::domain::cursor::{OperationCursor, WalletCursor};
use walletql::domain::money::{MAX_AMOUNT_CENTS, Money, parse_decimal};
use walletql::domain::validate;
use walletql::schema::{WalletSchema, new_loader};
use walletql::store::reader::Reader;

use crate::helpers::{TestApp, TestClient, data};

proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_without_panic(text in "\\PC{0,60}") {
        if let Some(value) = parse_decimal(&text) {
            let _ = Money::amount(value);
        }
        let _ = OperationCursor::decode(&text);
        let _ = WalletCursor::decode(&text);
        let _ = validate::name(&text);
        let _ = validate::email(&text);
        let _ = validate::description(&text);
        let _ = validate::idempotency_key(&text);
    }

    #[test]
    fn decimal_text_means_exactly_its_cents(cents in 1i64..=MAX_AMOUNT_CENTS) {
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        let value = parse_decimal(&text).expect("decimal text");
        prop_assert_eq!(Money::amount(value).map(Money::cents), Ok(cents));
        prop_assert_eq!(Money::amount(value).map(|m| m.to_string()), Ok(text));
    }

    /// Parsing never rounds: whatever is accepted prints back as the same
    /// number, so long fractions (29 digits and more) are refused, not
    /// rounded to a near cent.
    #[test]
    fn long_fractions_are_exact_or_refused(
        int in 0u64..10, frac in "[0-9]{1,34}"
    ) {
        let text = format!("{int}.{frac}");
        if let Some(value) = parse_decimal(&text) {
            let trimmed = text.trim_end_matches('0').trim_end_matches('.');
            let printed = value.normalize().to_string();
            prop_assert_eq!(printed.as_str(), trimmed);
        }
        let nines = format!("0.00{}", "9".repeat(27 + (frac.len() % 5)));
        prop_assert!(parse_decimal(&nines).is_none(), "{} was rounded", nines);
    }

    #[test]
    fn numbers_with_exponents_signs_or_three_decimals_are_refused(
        int in 0u64..1_000_000, frac in 0u32..1000, exp in 1u32..20
    ) {
        let exponent = format!("{int}e{exp}");
        let signed = format!("+{int}");
        prop_assert!(parse_decimal(&exponent).is_none());
        prop_assert!(parse_decimal(&signed).is_none());
        let three = format!("{int}.{frac:03}");
        if let Some(value) = parse_decimal(&three) && frac % 10 != 0 {
            prop_assert!(Money::amount(value).is_err());
        }
    }
}

/// One SQLite-backed service for the schema-level properties, with two
/// clients: Alice (who has 100.00) and Bob.
struct World {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    schema: WalletSchema,
    alice: TestClient,
    bob: TestClient,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (app, alice, bob) = runtime.block_on(async {
            let app = TestApp::sqlite().await;
            let alice = app.create_client("Alice").await;
            let bob = app.create_client("Bob").await;
            data(&app.deposit(&alice.wallet, "100").await);
            (app, alice, bob)
        });
        let schema = walletql::schema::build(app.ledger.clone(), &ApiLimits::default());
        World {
            runtime,
            app,
            schema,
            alice,
            bob,
        }
    })
}

impl World {
    /// Runs a document through the real schema as `caller`.
    fn run(&self, caller: Caller, query: &str, variables: Value) -> Value {
        self.runtime.block_on(async {
            let request = async_graphql::Request::new(query)
                .variables(async_graphql::Variables::from_json(variables))
                .data(caller)
                .data(new_loader(Reader::new(self.app.store.clone(), None, None)));
            serde_json::to_value(self.schema.execute(request).await).expect("json")
        })
    }

    fn balances(&self) -> (String, String) {
        self.runtime.block_on(async {
            (
                self.app.balance(&self.alice.wallet).await,
                self.app.balance(&self.bob.wallet).await,
            )
        })
    }

    fn alice(&self) -> Caller {
        Caller::Client {
            client_id: uuid::Uuid::parse_str(&self.alice.id).expect("id"),
            wallet_id: uuid::Uuid::parse_str(&self.alice.wallet).expect("id"),
        }
    }
}

fn every_error_has_a_code(response: &Value) -> bool {
    response["errors"].as_array().is_none_or(|errors| {
        errors.iter().all(|e| {
            e["extensions"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
    })
}

/// Amounts as a client might send them: good ones, and every kind of bad.
fn amount() -> impl Strategy<Value = Value> {
    prop_oneof![
        (1i64..=10_000).prop_map(|c| json!(format!("{}.{:02}", c / 100, c % 100))),
        "\\PC{0,30}".prop_map(Value::from),
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{1,3})?".prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any::<i64>().prop_map(|i| json!(i)),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(["1"])),
    ]
}

/// Wallet ids: real ones, unknown ones, and malformed text.
fn wallet_id() -> impl Strategy<Value = Value> {
    let w = world();
    prop_oneof![
        Just(json!(w.alice.wallet)),
        Just(json!(w.bob.wallet)),
        Just(json!(uuid::Uuid::now_v7())),
        "\\PC{0,40}".prop_map(Value::from),
        Just(json!(12345)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn transfers_with_any_input_move_money_only_when_accepted(
        to in wallet_id(), from in wallet_id(), amount in amount(),
        description in proptest::option::of("\\PC{0,600}"), key in proptest::option::of("\\PC{0,300}"),
    ) {
        let w = world();
        let before = w.balances();
        let response = w.run(
            w.alice(),
            "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id amount } } }",
            json!({ "input": { "fromWalletId": from, "toWalletId": to, "amount": amount, "description": description, "idempotencyKey": key } }),
        );
        prop_assert!(every_error_has_a_code(&response), "{}", response);
        if response.get("errors").is_some() {
            prop_assert_eq!(w.balances(), before, "a refused transfer moved money: {}", response);
        } else {
            prop_assert_ne!(w.balances(), before);
        }
    }

    #[test]
    fn deposits_and_new_clients_with_any_input_change_nothing_when_refused(
        wallet in wallet_id(), amount in amount(), name in "\\PC{0,250}", email in proptest::option::of("\\PC{0,40}"),
    ) {
        let w = world();
        let before = w.balances();
        let deposit = w.run(
            Caller::Operator,
            "mutation($input: DepositInput!) { deposit(input: $input) { wallet { balance } } }",
            json!({ "input": { "walletId": wallet, "amount": amount } }),
        );
        prop_assert!(every_error_has_a_code(&deposit), "{}", deposit);
        if deposit.get("errors").is_some() {
            prop_assert_eq!(w.balances(), before);
        }
        let clients_before = w.runtime.block_on(w.app.sql_i64("SELECT COUNT(*) FROM client"));
        let created = w.run(
            Caller::Anonymous,
            "mutation($name: String!, $email: String) { createClient(input: {name: $name, email: $email}) { token } }",
            json!({ "name": name, "email": email }),
        );
        prop_assert!(every_error_has_a_code(&created), "{}", created);
        let clients_after = w.runtime.block_on(w.app.sql_i64("SELECT COUNT(*) FROM client"));
        let expected = if created.get("errors").is_some() { clients_before } else { clients_before + 1 };
        prop_assert_eq!(clients_after, expected);
    }

    #[test]
    fn forged_cursors_never_open_another_wallet(seq in 0i64..1_000_000, garbage in "\\PC{0,80}") {
        let w = world();
        let bobs = OperationCursor { wallet_id: uuid::Uuid::parse_str(&w.bob.wallet).expect("id"), seq, operation: (seq > 0).then(uuid::Uuid::now_v7) }.encode();
        let page = "query($w: UUID!, $after: String) { operations(walletId: $w, first: 5, after: $after) { nodes { amount } } }";
        // Bob's cursor on Alice's own wallet: refused, not reinterpreted.
        let own = w.run(w.alice(), page, json!({ "w": w.alice.wallet, "after": bobs }));
        prop_assert_eq!(own["errors"][0]["extensions"]["code"].as_str(), Some("INVALID_INPUT"));
        // Any cursor on Bob's wallet: forbidden to Alice.
        for after in [json!(bobs), json!(garbage)] {
            let theirs = w.run(w.alice(), page, json!({ "w": w.bob.wallet, "after": after }));
            let code = theirs["errors"][0]["extensions"]["code"].as_str().map(str::to_owned);
            prop_assert!(matches!(code.as_deref(), Some("FORBIDDEN" | "INVALID_INPUT")), "{}", theirs);
            prop_assert!(theirs["data"].is_null() || theirs["data"]["operations"].is_null());
        }
    }
}
