//! The `steady serve` nodes sharing this database, from their heartbeats: `/api/v1/nodes` and
//! the nodes page. For auditors and admins.

use askama::Template;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use steady_engine::engine::now;
use steady_engine::store::NodeRecord;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::page::{Me, Moment, PageResult, render};
use crate::{AppState, auth::Caller, node_is_up};

/// A server node on this database: `up` when it said it was alive recently, `this` for the
/// node that answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    #[schema(format = DateTime)]
    pub started_at: String,
    #[schema(format = DateTime)]
    pub last_seen: String,
    pub up: bool,
    pub this: bool,
}

impl NodeView {
    pub fn new(node: &NodeRecord, up: bool, this: bool) -> NodeView {
        use steady_engine::audit::format_timestamp;
        NodeView {
            id: node.id.clone(),
            address: node.address.clone(),
            started_at: format_timestamp(node.started_at),
            last_seen: format_timestamp(node.last_seen),
            up,
            this,
        }
    }
}

/// The `steady serve` nodes on this database and whether each is up.
#[utoipa::path(get, tag = "ops", path = "/api/v1/nodes", responses((status = 200, description = "Every node", body = Vec<NodeView>), (status = 401, description = "Not signed in"), (status = 403, description = "For auditors and admins")))]
pub(crate) async fn list_nodes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<NodeView>>, AppError> {
    caller.require_audit_reader()?;
    let now = now();
    let this = &state.engine.config().node;
    let nodes = state.store.nodes().await?;
    Ok(Json(
        nodes
            .iter()
            .map(|node| NodeView::new(node, node_is_up(node, now), node.id == *this))
            .collect(),
    ))
}

/// A node as the nodes page shows it.
struct NodeRow {
    id: String,
    address: String,
    up: bool,
    this: bool,
    /// When it last said it was alive.
    last_seen: Moment,
    started: Moment,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    me: Option<Me>,
    nodes: Vec<NodeRow>,
}

pub(crate) async fn nodes(State(state): State<AppState>, me: Me) -> PageResult {
    me.caller.require_audit_reader()?;
    let now = now();
    let this = &state.engine.config().node;
    let nodes = state
        .store
        .nodes()
        .await?
        .into_iter()
        .map(|node| NodeRow {
            up: node_is_up(&node, now),
            this: node.id == *this,
            last_seen: Moment::new(node.last_seen),
            started: Moment::new(node.started_at),
            id: node.id,
            address: node.address,
        })
        .collect();
    Ok(render(&NodesPage { me: Some(me), nodes }))
}
