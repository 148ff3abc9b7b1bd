//! `/api/v1/connector-agent/...`: the endpoints self-hosted connectors call (implemented in
//! [`crate::connector_agent::api`], next to their credentials and tokens).

pub use crate::connector_agent::api::{
    batches, heartbeat, logs, next_task, put_batch, result, start_sync_now, token,
};
