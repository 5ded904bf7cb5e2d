//! The GraphQL endpoint over HTTP: POST, and GET for queries (the
//! GraphQL-over-HTTP spec, which urql and others use for queries).

use std::sync::Arc;
use std::time::Instant;

use async_graphql::{Response as GqlResponse, ServerError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::AppState;
use super::auth::authenticate;
use super::listener::Peer;
use crate::domain::error::AppError;
use crate::schema::{
    DOCUMENT_ID, MIN_LSN_HEADER, RequestBudget, Transport, new_loader, server_error,
};
use crate::store::reader::Reader;
use crate::store::replicas::Lsn;

/// The media type of the GraphQL-over-HTTP spec.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json; charset=utf-8";

/// `POST /graphql`: one GraphQL request (batches are refused), within the
/// request timeout.
pub async fn graphql(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let media = Media::for_post(&headers);
    // The body limit layer in front (and `body::gate`) stop a body past
    // the limit.
    let read = super::body::read(body, usize::MAX, state.api_limits.max_body_bytes).await;
    match read.and_then(|bytes| post_request(&bytes)) {
        Ok(request) => execute(&state, peer, &headers, request, media).await,
        Err(err) => refused_as(err, media),
    }
}

/// A POST body: the GraphQL-over-HTTP request, with `documentId` (persisted
/// documents) carried into the extensions for `schema::persisted`.
fn post_request(body: &[u8]) -> Result<async_graphql::Request, AppError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct PostBody {
        #[serde(default)]
        query: String,
        operation_name: Option<String>,
        variables: Option<serde_json::Value>,
        extensions: Option<serde_json::Map<String, serde_json::Value>>,
        document_id: Option<String>,
    }
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(AppError::invalid(
            "batched requests are not supported: send one request per POST",
        ));
    }
    let body: PostBody = serde_json::from_slice(body)
        .map_err(|err| AppError::invalid(format!("malformed GraphQL request: {err}")))?;
    let mut request = async_graphql::Request::new(body.query);
    request.operation_name = body.operation_name;
    if let Some(variables) = body.variables {
        request.variables = async_graphql::Variables::from_json(variables);
    }
    for (name, value) in body.extensions.unwrap_or_default() {
        let value = async_graphql::Value::from_json(value)
            .map_err(|_| AppError::invalid("malformed GraphQL request: bad extensions"))?;
        request.extensions.insert(name, value);
    }
    if let Some(id) = body.document_id {
        request.extensions.insert(DOCUMENT_ID.to_owned(), id.into());
    }
    Ok(request)
}

/// `GET /graphql?query=...` (not a WebSocket, not a browser): a query, never
/// a mutation (405), answered as `application/graphql-response+json`.
pub async fn graphql_get(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    query_string: Option<&str>,
) -> Response {
    let media = Media::for_get(headers);
    let max = state.api_limits.max_body_bytes;
    let query_string = query_string.unwrap_or_default();
    // The URL carries what a POST body would: the same size limit.
    if query_string.len() > max {
        return refused_as(AppError::PayloadTooLarge(max), media);
    }
    let mut request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(err) => {
            let malformed = AppError::invalid(format!("malformed GraphQL request: {err}"));
            return refused_as(malformed, media);
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Persisted {
        document_id: Option<String>,
    }
    if let Ok(Persisted {
        document_id: Some(id),
    }) = serde_urlencoded::from_str(query_string)
    {
        request.extensions.insert(DOCUMENT_ID.to_owned(), id.into());
    }
    let request = request.data(Transport::HttpGet);
    execute(state, peer, headers, request, media).await
}

/// How a response is framed: the GraphQL-over-HTTP spec's two media types.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`: always 200 once the request was accepted.
    Json,
    /// `application/graphql-response+json`: 4xx for a request that failed
    /// before execution (it has no data).
    GraphqlResponse,
}

impl Media {
    /// A POST is answered as it asks; without an Accept naming the new
    /// media type, as `application/json` (the spec's legacy default).
    pub fn for_post(headers: &HeaderMap) -> Media {
        match accepts_graphql_response(headers) {
            true => Media::GraphqlResponse,
            false => Media::Json,
        }
    }

    /// A GET is answered as `application/graphql-response+json` unless it
    /// asks for `application/json` alone.
    pub fn for_get(headers: &HeaderMap) -> Media {
        match accepts_only_json(headers) {
            true => Media::Json,
            false => Media::GraphqlResponse,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Media::Json => "application/json",
            Media::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
        }
    }
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    accept(headers).contains("application/graphql-response+json")
}

fn accepts_only_json(headers: &HeaderMap) -> bool {
    let accept = accept(headers);
    accept.contains("application/json") && !accept.contains("application/graphql-response+json")
}

async fn execute(
    state: &AppState,
    peer: Peer,
    headers: &HeaderMap,
    request: async_graphql::Request,
    media: Media,
) -> Response {
    let address = peer.0.map(|addr| addr.ip());
    let caller = match authenticate(state, headers, address).await {
        Ok(caller) => caller,
        Err(err) => return refused_as(err, media),
    };
    if let Err(err) = state.rate_limiter.check(&caller, address) {
        return refused_as(err, media);
    }
    let span = tracing::info_span!(
        "graphql",
        operation = request.operation_name.as_deref().unwrap_or("-"),
        caller = caller.kind(),
    );
    let started = Instant::now();
    let deadline = started + state.api_limits.request_timeout;
    let budget = {
        let (limiter, caller) = (state.rate_limiter.clone(), caller.clone());
        Arc::new(RequestBudget::new(
            deadline,
            Box::new(move |units| limiter.check_n(&caller, address, units)),
        ))
    };
    let floor = match min_lsn(headers) {
        Ok(floor) => floor,
        Err(err) => return refused_as(err, media),
    };
    let reader = Reader::new(state.store.clone(), caller.identity(), floor);
    let request = request
        .data(caller)
        .data(new_loader(reader))
        .data(budget.clone());
    let execution = state.schema.execute(request).instrument(span.clone());
    tokio::pin!(execution);
    let response = match tokio::time::timeout_at(deadline.into(), &mut execution).await {
        Ok(response) => response,
        // A mutation is never cut off mid-field: the field in flight is
        // answered (it may have committed) and the ones after it are
        // refused with TIMEOUT without running (see `schema::budget`).
        Err(_) if budget.writing() => execution.await,
        // A query is dropped, which rolls back any transaction it had open.
        Err(_) => return refused_as(AppError::Timeout, media),
    };
    // Only when debug logging is on: collecting the codes allocates.
    if tracing::enabled!(tracing::Level::DEBUG) {
        span.in_scope(|| {
            let codes: Vec<_> = response.errors.iter().filter_map(code_of).collect();
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, errors = ?codes, "graphql request");
        });
    }
    respond(response, media)
}

/// The position a request's reads must see (`x-min-lsn`), if it says.
fn min_lsn(headers: &HeaderMap) -> Result<Option<Lsn>, AppError> {
    let Some(value) = headers.get(MIN_LSN_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AppError::invalid(format!("{MIN_LSN_HEADER}: not text")))?;
    text.parse()
        .map(Some)
        .map_err(|err| AppError::invalid(format!("{MIN_LSN_HEADER}: {err}")))
}

fn code_of(error: &ServerError) -> Option<&str> {
    match error.extensions.as_ref()?.get("code")? {
        async_graphql::Value::String(code) => Some(code.as_str()),
        _ => None,
    }
}

fn respond(response: GqlResponse, media: Media) -> Response {
    // A mutation sent with GET was refused before it ran.
    if response
        .errors
        .iter()
        .any(|e| code_of(e) == Some("METHOD_NOT_ALLOWED"))
    {
        let mut refused = framed(response, media, StatusCode::METHOD_NOT_ALLOWED);
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return refused;
    }
    // No data and no error with a path: the request failed before
    // execution (parse, validation, limits).
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    // A mutation past the caller's rate is refused as the door refuses a
    // request: 429 with Retry-After, whatever the media type.
    if request_error && let Some(retry_after) = rate_limited(&response) {
        let mut limited = framed(response, media, StatusCode::TOO_MANY_REQUESTS);
        limited
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return limited;
    }
    // Nothing answered because the database is away (no primary during a
    // failover, say): 503 with Retry-After, so proxies and clients back off.
    // A request where any field was answered stays 200: its data counts.
    if unanswered_for_lack_of_database(&response) {
        let mut unavailable = framed(response, media, StatusCode::SERVICE_UNAVAILABLE);
        unavailable.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
        );
        return unavailable;
    }
    let status = match media {
        // application/json: 200 once the request was accepted.
        Media::Json => StatusCode::OK,
        Media::GraphqlResponse if request_error => StatusCode::BAD_REQUEST,
        Media::GraphqlResponse => StatusCode::OK,
    };
    framed(response, media, status)
}

/// What a 503 asks a client to wait: about the time a failover to a
/// promoted standby takes to be noticed.
const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

/// Every error is `SERVICE_UNAVAILABLE` and no field has data.
fn unanswered_for_lack_of_database(response: &GqlResponse) -> bool {
    let unanswered = match &response.data {
        async_graphql::Value::Null => true,
        async_graphql::Value::Object(fields) => {
            fields.values().all(|v| *v == async_graphql::Value::Null)
        }
        _ => false,
    };
    unanswered
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| code_of(e) == Some("SERVICE_UNAVAILABLE"))
}

/// The wait of a `RATE_LIMITED` refusal, if the response is one.
fn rate_limited(response: &GqlResponse) -> Option<u64> {
    let error = response
        .errors
        .iter()
        .find(|e| code_of(e) == Some("RATE_LIMITED"))?;
    match error.extensions.as_ref()?.get("retryAfter")? {
        async_graphql::Value::Number(secs) => secs.as_u64(),
        _ => None,
    }
}

fn framed(mut response: GqlResponse, media: Media, status: StatusCode) -> Response {
    // Headers the execution set (`x-commit-lsn`).
    let headers = std::mem::take(&mut response.http_headers);
    match serde_json::to_vec(&response) {
        Ok(body) => {
            let mut framed =
                (status, [(header::CONTENT_TYPE, media.content_type())], body).into_response();
            framed.headers_mut().extend(headers);
            framed
        }
        Err(err) => refused_as(AppError::Internal(err.into()), media),
    }
}

/// A request refused outside GraphQL execution, in GraphQL's error shape,
/// as `application/graphql-response+json` (for when the request's Accept
/// is not known).
pub fn refused(err: AppError) -> Response {
    refused_as(err, Media::GraphqlResponse)
}

/// A request refused outside GraphQL execution, framed as `media`.
pub fn refused_as(err: AppError, media: Media) -> Response {
    let status = match err {
        AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
        AppError::ForbiddenOrigin | AppError::Forbidden => StatusCode::FORBIDDEN,
        AppError::NotFound(_) => StatusCode::NOT_FOUND,
        AppError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        AppError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AppError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Internal causes are logged by the conversion; an outage is worth a
    // warning of its own.
    if let AppError::ServiceUnavailable(cause) = &err {
        tracing::warn!(error = %cause, "database unavailable");
    }
    let retry_after = match &err {
        AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
        AppError::ServiceUnavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
        _ => None,
    };
    let error = server_error(err, None);
    let mut response = framed(GqlResponse::from_errors(vec![error]), media, status);
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Turns the plain 413 that the body limit layer sends (when the declared
/// length is already too large) into the same JSON error as every refusal.
pub async fn payload_too_large(State(max_bytes): State<usize>, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return refused(AppError::PayloadTooLarge(max_bytes));
    }
    response
}
