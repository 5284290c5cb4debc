//! Routes of the admin endpoint. Everything here is read-only, except the MCU's conference routes
//! (create, join with an SDP offer, mute, leave), which change live media state only; secrets never leave
//! the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use vienna_store::{Aor, Store, StoreError, UnixTime};

use super::metrics::{process_metrics, unix_now};
use crate::roles::{Listener, NOT_BUILT};
use crate::turn::{TurnRole, TurnShared, WorkerHandle};

/// What the routes share.
pub struct AdminState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Prometheus renderer.
    pub prometheus: PrometheusHandle,
    /// When the server started.
    pub started: Instant,
    /// Same, as Unix seconds.
    pub started_unix: f64,
    /// The server's SIP domain.
    pub domain: String,
    /// Every bound listener.
    pub listeners: Vec<Listener>,
    /// Bearer token for `/api/`, empty for none.
    pub token: String,
    /// The TURN relay's shared state and workers, when it runs.
    pub turn: Option<(Arc<TurnShared>, Arc<Vec<WorkerHandle>>)>,
    /// The SIP role, when it runs.
    pub sip: Option<Arc<crate::sip::SipShared>>,
    /// The audio MCU, when it runs.
    pub mcu: Option<Arc<crate::mcu::McuRole>>,
    /// The conference focus's live conferences, when it runs.
    pub conferences: Option<Arc<crate::sip::conference::ConferenceShared>>,
    /// The configuration in effect (conference URIs, lifetimes).
    pub config: Arc<crate::config::Config>,
}

type Shared = Arc<AdminState>;

/// The admin router.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/accounts", get(accounts))
        .route("/accounts/{uri}", get(account))
        .route("/registrations", get(registrations))
        .route("/conferences", get(conferences).post(conference_create))
        .route("/conferences/{id}", get(conference))
        .route("/allocations", get(allocations))
        .route("/sip", get(sip))
        .route("/presence", get(presence))
        .route("/presence/{uri}", get(presentity))
        .route("/mcu", get(mcu_status))
        .route("/mcu/conferences", get(mcu_conferences))
        .route("/mcu/conferences/{name}", post(mcu_create).delete(mcu_remove))
        .route("/mcu/conferences/{name}/participants", post(mcu_join))
        .route("/mcu/conferences/{name}/participants/{id}", delete(mcu_leave))
        .route("/mcu/conferences/{name}/participants/{id}/mute", post(mcu_mute).delete(mcu_unmute))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such API route".into()) })
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .layer(middleware::from_fn(count_requests))
        .with_state(state)
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::counter!("vienna_admin_requests_total", "route" => route, "status" => response.status().as_str().to_owned())
        .increment(1);
    response
}

async fn require_token(State(state): State<Shared>, headers: HeaderMap, request: Request, next: Next) -> Response {
    if !state.token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !vienna_crypto::ct_eq(given.as_bytes(), state.token.as_bytes()) {
            let mut response =
                ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("literal"));
            return response;
        }
    }
    next.run(request).await
}

/// A JSON error `{"error": "..."}` with a status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Invalid { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            _ => {
                metrics::counter!("vienna_store_errors_total").increment(1);
                tracing::error!(error = %e, "admin: store failed");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// Runs a store call on the blocking pool.
async fn with_store<T: Send + 'static>(
    state: &Shared,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("store task failed: {e}")))?
        .map_err(ApiError::from)
}

fn unix_now_secs() -> UnixTime {
    unix_now() as UnixTime
}

async fn healthz(State(state): State<Shared>) -> Response {
    match with_store(&state, |s| s.ping()).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(ApiError(_, reason)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {reason}\n")).into_response(),
    }
}

async fn metrics(State(state): State<Shared>) -> Response {
    metrics::gauge!("vienna_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    let now = unix_now_secs();
    if let Ok((accounts, registrations)) =
        with_store(&state, move |s| Ok((s.list_accounts()?.len(), s.all_bindings(now)?.len()))).await
    {
        metrics::gauge!("vienna_accounts").set(accounts as f64);
        metrics::gauge!("vienna_registrations").set(registrations as f64);
    }
    if let Some((turn, workers)) = state.turn.clone() {
        let _ = tokio::task::spawn_blocking(move || {
            TurnRole::snapshot(&workers, false, Duration::from_millis(500));
            turn.export_metrics();
        })
        .await;
    }
    if let Some(sip) = &state.sip {
        sip.export_metrics();
    }
    if let Some(mcu) = &state.mcu {
        mcu.shared.export_metrics();
    }
    if let Some(conferences) = &state.conferences {
        conferences.export_metrics();
    }
    let mut body = state.prometheus.render();
    body.push_str(&process_metrics(state.started_unix));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

#[derive(Serialize)]
struct Status<'a> {
    version: &'static str,
    domain: &'a str,
    uptime_seconds: u64,
    listeners: &'a [Listener],
    not_built: &'static [&'static str],
}

async fn status(State(state): State<Shared>) -> Response {
    Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        domain: &state.domain,
        uptime_seconds: state.started.elapsed().as_secs(),
        listeners: &state.listeners,
        not_built: NOT_BUILT,
    })
    .into_response()
}

async fn accounts(State(state): State<Shared>) -> Result<Response, ApiError> {
    Ok(Json(with_store(&state, |s| s.list_accounts()).await?).into_response())
}

async fn account(State(state): State<Shared>, Path(uri): Path<String>) -> Result<Response, ApiError> {
    let aor = Aor::parse(&uri, Some(&state.domain))?;
    let now = unix_now_secs();
    let (account, bindings) = with_store(&state, move |s| {
        let account = s.account(&aor)?.ok_or_else(|| StoreError::NotFound { kind: "account", key: aor.to_string() })?;
        Ok((account, s.bindings(&aor, now)?))
    })
    .await?;
    Ok(Json(serde_json::json!({ "account": account, "registrations": bindings })).into_response())
}

async fn registrations(State(state): State<Shared>) -> Result<Response, ApiError> {
    let now = unix_now_secs();
    Ok(Json(with_store(&state, move |s| s.all_bindings(now)).await?).into_response())
}

async fn conferences(State(state): State<Shared>) -> Result<Response, ApiError> {
    Ok(Json(with_store(&state, |s| s.list_conferences()).await?).into_response())
}

/// What `POST /api/v1/conferences` takes.
#[derive(serde::Deserialize)]
struct NewConference {
    organizer: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    id: Option<String>,
}

/// Creates a conference in the store (the focus picks it up at its first request): 201 with the record
/// and its URIs (focus, AV MCU, dial-in).
async fn conference_create(State(state): State<Shared>, Json(new): Json<NewConference>) -> Result<Response, ApiError> {
    let organizer = Aor::parse(&new.organizer, Some(&state.domain))?;
    let record = crate::sip::conference::new_record(
        &state.config,
        &organizer.to_string(),
        &new.subject,
        new.id.as_deref(),
        unix_now_secs(),
    )
    .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let stored = record.clone();
    with_store(&state, move |s| {
        s.account(&organizer)?.ok_or_else(|| StoreError::NotFound { kind: "account", key: organizer.to_string() })?;
        s.add_conference(&stored)
    })
    .await?;
    let uris = crate::sip::conference::uris(&state.config, &record);
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "conference": record, "uris": uris }))).into_response())
}

/// One conference: the store's record, its URIs, the live roster (users, roles, audio, mute, SSRC,
/// dominant speaker, subscribers) and the MCU's view of its mix (participants, encodes).
async fn conference(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let key = id.clone();
    let record = with_store(&state, move |s| {
        s.conference(&key)?.ok_or_else(|| StoreError::NotFound { kind: "conference", key: key.clone() })
    })
    .await?;
    let live = state.conferences.as_ref().and_then(|c| c.view(&id));
    let media = match &state.mcu {
        Some(mcu) => mcu.list().await.into_iter().find(|c| c.name == record.id),
        None => None,
    };
    let uris = crate::sip::conference::uris(&state.config, &record);
    Ok(Json(serde_json::json!({ "conference": record, "uris": uris, "roster": live, "mcu": media })).into_response())
}

async fn sip(State(state): State<Shared>) -> Result<Response, ApiError> {
    match &state.sip {
        Some(sip) => Ok(Json(sip.to_json()).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "the SIP role is not running".into())),
    }
}

async fn presence(State(state): State<Shared>) -> Result<Response, ApiError> {
    match &state.sip {
        Some(sip) => Ok(Json(sip.presence_json()).into_response()),
        None => Err(ApiError(StatusCode::NOT_FOUND, "the SIP role is not running".into())),
    }
}

/// One user's presence: what watchers see now (when it is among the listed presentities), and the
/// durable part from the store: contact list with groups, ACL entries and watchers.
async fn presentity(State(state): State<Shared>, Path(uri): Path<String>) -> Result<Response, ApiError> {
    let aor = Aor::parse(&uri, Some(&state.domain))?;
    let key = aor.to_string();
    let (list, aces, watchers, manual) = with_store(&state, move |s| {
        s.account(&aor)?.ok_or_else(|| StoreError::NotFound { kind: "account", key: aor.to_string() })?;
        Ok((s.contact_list(&aor)?, s.aces(&aor)?, s.watchers(&aor)?, s.manual_presence(&aor)?))
    })
    .await?;
    let live = state.sip.as_ref().and_then(|sip| sip.presentity_json(&key));
    let offline = serde_json::json!({ "aor": key, "state": "offline", "availability": 18500 });
    Ok(Json(serde_json::json!({
        "presence": live.unwrap_or(offline),
        "manual_state": manual,
        "contact_list": list,
        "acl": aces,
        "watchers": watchers,
    }))
    .into_response())
}

async fn allocations(State(state): State<Shared>) -> Result<Response, ApiError> {
    match &state.turn {
        Some((turn, workers)) => {
            let turn = turn.clone();
            let workers = workers.clone();
            let list = tokio::task::spawn_blocking(move || {
                TurnRole::snapshot(&workers, true, Duration::from_millis(500));
                turn.allocations()
            })
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("snapshot failed: {e}")))?;
            Ok(Json(list).into_response())
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, "the TURN relay is not running".into())),
    }
}

fn mcu_of(state: &Shared) -> Result<Arc<crate::mcu::McuRole>, ApiError> {
    state.mcu.clone().ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "the audio MCU is not running".into()))
}

fn mcu_error(e: String) -> ApiError {
    let status = if e.starts_with("no such") {
        StatusCode::NOT_FOUND
    } else if e.starts_with("SDP") || e.contains("conference full") {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    ApiError(status, e)
}

fn valid_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "conference names are 1-128 of A-Z a-z 0-9 - _ . :".into()));
    }
    Ok(())
}

async fn mcu_status(State(state): State<Shared>) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    Ok(Json(serde_json::json!({ "workers": mcu.shared.workers() })).into_response())
}

async fn mcu_conferences(State(state): State<Shared>) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    Ok(Json(mcu.list().await).into_response())
}

async fn mcu_create(State(state): State<Shared>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    valid_name(&name)?;
    mcu.create(&name).await.map_err(mcu_error)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "conference": name }))).into_response())
}

async fn mcu_remove(State(state): State<Shared>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    mcu.remove(&name).await.map_err(mcu_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Body: the SDP offer (any content type). Answer: 201 with the SDP answer (`application/sdp`) and the
/// participant's URL in `Location`. `?label=` names the participant in logs and the roster.
async fn mcu_join(
    State(state): State<Shared>,
    Path(name): Path<String>,
    query: axum::extract::Query<HashMap<String, String>>,
    offer: String,
) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    valid_name(&name)?;
    let label = query.get("label").cloned().unwrap_or_default();
    let joined = mcu.join(&name, offer, label).await.map_err(mcu_error)?;
    let location = format!("/api/v1/mcu/conferences/{name}/participants/{}", joined.participant);
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp".to_owned()), (header::LOCATION, location)],
        joined.answer,
    )
        .into_response())
}

async fn mcu_leave(
    State(state): State<Shared>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    mcu.leave(&name, &id).await.map_err(mcu_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn mcu_mute(State(state): State<Shared>, Path((name, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    mcu.mute(&name, &id, true).await.map_err(mcu_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn mcu_unmute(
    State(state): State<Shared>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mcu = mcu_of(&state)?;
    mcu.mute(&name, &id, false).await.map_err(mcu_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
