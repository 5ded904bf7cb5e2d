//! The GraphiQL playground, served entirely by walletql: its page and the
//! pinned npm builds it needs are built into the binary (assets/graphiql),
//! so it works on a machine with no internet access.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;

const PAGE: &str = include_str!("../../assets/graphiql/index.html");

/// Name, content type, gzipped bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "graphiql.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.js.gz"),
    ),
    (
        "graphiql.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphiql.min.css.gz"),
    ),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react.production.min.js.gz"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/react-dom.production.min.js.gz"),
    ),
    (
        "graphql-ws.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/graphiql/graphql-ws.min.js.gz"),
    ),
];

/// The playground page, unless switched off (`DISABLE_GRAPHIQL`).
pub fn page(state: &AppState) -> Response {
    if !state.api_limits.graphiql {
        return (StatusCode::NOT_FOUND, "GraphiQL is disabled on this server").into_response();
    }
    Html(PAGE).into_response()
}

/// `GET /graphiql/{file}`: one of the embedded builds. They are stored
/// gzipped and sent as such (every browser accepts gzip).
pub async fn asset(
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if !state.api_limits.graphiql {
        return StatusCode::NOT_FOUND.into_response();
    }
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CONTENT_ENCODING, "gzip"),
                // Versioned by the binary: cache for a day.
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
