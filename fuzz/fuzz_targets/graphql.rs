//! Arbitrary GraphQL documents and variables through the real schema, on an
//! embedded database, as the operator and as an anonymous caller: nothing
//! panics, and every error carries a code.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use walletql::config::ApiLimits;
use walletql::domain::auth::Caller;
use walletql::ledger::Ledger;
use walletql::schema::{WalletSchema, new_loader};
use walletql::store::Store;
use walletql::store::reader::Reader;

struct Service {
    runtime: tokio::runtime::Runtime,
    store: Store,
    schema: WalletSchema,
}

fn service() -> &'static Service {
    static SERVICE: OnceLock<Service> = OnceLock::new();
    SERVICE.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let path = std::env::temp_dir().join(format!("walletql-fuzz-{}.db", std::process::id()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = runtime.block_on(Store::connect(&url, 2)).expect("store");
        let ledger = runtime
            .block_on(Ledger::start(store.clone(), Default::default()))
            .expect("ledger");
        let schema = walletql::schema::build(ledger, &ApiLimits::default());
        Service {
            runtime,
            store,
            schema,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // "query NUL variables"
    let (query, variables) = text.split_once('\0').unwrap_or((&text, "{}"));
    let variables = serde_json::from_str(variables).unwrap_or(serde_json::Value::Null);
    let service = service();
    for caller in [Caller::Operator, Caller::Anonymous] {
        let request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables.clone()))
            .data(caller)
            .data(new_loader(Reader::new(service.store.clone(), None, None)));
        let response = service.runtime.block_on(service.schema.execute(request));
        for error in &response.errors {
            let code = error.extensions.as_ref().and_then(|e| e.get("code"));
            assert!(code.is_some(), "error without a code: {error:?}");
        }
    }
});
