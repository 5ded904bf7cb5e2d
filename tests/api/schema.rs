/// `schema.graphql` is the SDL the server serves; regenerate it with
/// `cargo run -- print-schema > schema.graphql` after changing the API.
#[test]
fn checked_in_schema_matches_the_code() {
    let checked_in = include_str!("../../schema.graphql");
    assert!(
        checked_in == walletql::schema::sdl(),
        "schema.graphql is stale: run `cargo run -- print-schema > schema.graphql`"
    );
}
