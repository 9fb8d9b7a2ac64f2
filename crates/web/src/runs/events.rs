//! Live audit events as Server-Sent Events: one run's (`/api/v1/runs/{id}/events`) or every
//! run's (`/api/v1/events`, what *my work* and dashboards follow). Each event's `seq` is its
//! id, so a client reconnecting with `Last-Event-ID` misses nothing and sees nothing twice.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use steady_engine::store::AuditFilter;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::dto;
use crate::error::AppError;
use crate::extract::{ApiQuery, RunId};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Only events after this `seq`; the `Last-Event-ID` header says the same on reconnect.
    after: Option<i64>,
}

/// The run's audit events as Server-Sent Events, each with its `seq` as the event id, so that
/// a client that reconnects with `Last-Event-ID` misses nothing and sees nothing twice.
#[utoipa::path(get, tag = "runs", path = "/api/v1/runs/{id}/events", params(("id" = String, Path, description = "Run id"), EventsQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")), responses((status = 200, description = "The run's audit events", content_type = "text/event-stream", body = String), (status = 204, description = "The run has finished and nothing is left to send"), (status = 401, description = "Not signed in"), (status = 404, description = "No such run"), (status = 422, description = "Invalid query")))]
pub(crate) async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    RunId(id): RunId,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(status) = state.store.run_status(id).await? else {
        return Err(AppError::not_found(format!("no run {id}")));
    };
    let after = resume_after(&headers, query.after);
    // A finished run with nothing left to send: 204 tells an EventSource to stop reconnecting.
    // A proposal has not finished: it waits for someone to take it.
    if status.is_finished() {
        let filter = AuditFilter {
            run_id: Some(id),
            after_seq: Some(after),
            limit: Some(1),
            ..AuditFilter::default()
        };
        if state.store.audit_events(&filter).await?.is_empty() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    Ok(event_stream(state, caller, Some(id), after))
}

/// Every run's events as Server-Sent Events: what *my work* and dashboards follow.
#[utoipa::path(get, tag = "runs", path = "/api/v1/events", params(EventsQuery, ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this seq")), responses((status = 200, description = "Every run's audit events, from the newest when neither says where", content_type = "text/event-stream", body = String), (status = 401, description = "Not signed in"), (status = 422, description = "Invalid query")))]
pub(crate) async fn all_events(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, AppError> {
    let after = match resume_after(&headers, query.after) {
        0 => state.store.latest_seq().await?,
        after => after,
    };
    Ok(event_stream(state, caller, None, after))
}

fn resume_after(headers: &HeaderMap, after: Option<i64>) -> i64 {
    let resumed =
        headers.get("last-event-id").and_then(|value| value.to_str().ok()?.parse::<i64>().ok());
    resumed.or(after).unwrap_or(0)
}

/// How often a live event stream looks for new events when no hint wakes it.
const EVENTS_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Streams audit events after `after`: of one run (ending once the run has finished and all
/// its events are sent), or of every run (events about accounts are not sent). The stream ends
/// when the credentials it was opened with no longer hold, and when the server shuts down.
fn event_stream(state: AppState, caller: Caller, run: Option<Uuid>, after: i64) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    let mut stopping = state.stopping.subscribe();
    let stopped = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    // Each step of the stream: the events read but not yet sent, the last seq sent, and when
    // the caller's credentials were last checked.
    let mut events = state.store.changes().events;
    events.mark_unchanged();
    let start = (state, caller, after, Vec::new(), tokio::time::Instant::now(), events);
    let stream = futures_util::stream::unfold(
        start,
        move |(state, caller, after, mut pending, mut checked, mut events)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    let event: steady_engine::audit::AuditEvent = event;
                    let after = event.seq;
                    if event.run_id.is_none() {
                        continue;
                    }
                    let sse = Event::default()
                        .id(event.seq.to_string())
                        .event(event.action.clone())
                        .data(dto::audit_event(&event).to_string());
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (state, caller, after, pending, checked, events),
                    ));
                }
                if checked.elapsed() > std::time::Duration::from_secs(5) {
                    if !caller.still_valid(&state).await {
                        return None;
                    }
                    checked = tokio::time::Instant::now();
                }
                let filter = AuditFilter {
                    run_id: run,
                    after_seq: Some(after),
                    limit: Some(200),
                    ..AuditFilter::default()
                };
                match state.store.audit_events(&filter).await {
                    Ok(events) if !events.is_empty() => {
                        pending = events;
                        pending.reverse();
                    }
                    _ => {
                        // Everything of a finished run has been sent: its stream is done.
                        let finished = match run {
                            Some(id) => {
                                matches!(state.store.run_status(id).await, Ok(Some(status)) if status.is_finished())
                            }
                            None => false,
                        };
                        if finished {
                            // Its last events may have landed between the read and the status.
                            let last = state.store.audit_events(&filter).await.unwrap_or_default();
                            if last.is_empty() {
                                return None;
                            }
                            pending = last;
                            pending.reverse();
                            continue;
                        }
                        // New events here or on another node wake the stream; the poll
                        // covers a missed hint.
                        let _ = tokio::time::timeout(EVENTS_POLL, events.changed()).await;
                    }
                }
            }
        },
    );
    Sse::new(stream.take_until(stopped)).keep_alive(KeepAlive::default()).into_response()
}
