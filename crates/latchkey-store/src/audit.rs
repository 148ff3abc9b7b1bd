//! The audit trail: who did what to which object, one append-only hash chain per organization.
//!
//! Append an event in the same transaction as the change it records ([`append`]), so a change
//! is never without its event nor an event without its change. Appends of one organization are
//! serialised by a transaction-scoped advisory lock; each row's `hash` is
//! `sha256(prev_hash || canonical(row))`, so [`verify_chain`] finds the first row that was
//! changed, removed or reordered after the fact. The application role can only read and insert.

use crate::{OrgTx, Result, StoreError};
use serde::Serialize;
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

/// The hash a chain starts from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiClient,
    /// Latchkey itself: a scheduled job, an expiry, a policy's automatic decision.
    System,
    /// A self-hosted connector acting with its own credentials.
    Connector,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::ApiClient => "api_client",
            ActorKind::System => "system",
            ActorKind::Connector => "connector",
        }
    }

    fn parse(raw: &str) -> Result<Self> {
        Ok(match raw {
            "user" => ActorKind::User,
            "api_client" => ActorKind::ApiClient,
            "system" => ActorKind::System,
            "connector" => ActorKind::Connector,
            other => return Err(StoreError::Corrupt(format!("audit actor kind {other:?}"))),
        })
    }
}

/// Who did it. `label` is what a person reads in the log (an email, a client name, "expiry").
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<Uuid>,
    pub label: String,
}

impl Actor {
    pub fn user(id: Uuid, label: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::User,
            id: Some(id),
            label: label.into(),
        }
    }

    pub fn api_client(id: Uuid, label: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::ApiClient,
            id: Some(id),
            label: label.into(),
        }
    }

    pub fn system(label: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            id: None,
            label: label.into(),
        }
    }

    pub fn connector(id: Uuid, label: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Connector,
            id: Some(id),
            label: label.into(),
        }
    }
}

/// An event to record. `action` is a dotted lower-case verb (`vault.revealed`,
/// `access_request.approved`); `details` should hold strings, integers and booleans (they
/// survive the jsonb round trip exactly, which the hash needs). Never put a secret in it.
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
    pub target_kind: &'a str,
    pub target_id: Option<String>,
    pub details: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub id: Uuid,
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub actor: Actor,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    pub details: Value,
    #[serde(skip)]
    prev_hash: String,
    pub hash: String,
}

#[derive(FromRow)]
struct Row {
    id: Uuid,
    org_id: Uuid,
    seq: i64,
    occurred_at: OffsetDateTime,
    actor_kind: String,
    actor_id: Option<Uuid>,
    actor_label: String,
    action: String,
    target_kind: String,
    target_id: Option<String>,
    details: Value,
    prev_hash: String,
    hash: String,
}

impl Row {
    fn into_event(self) -> Result<(Uuid, Event)> {
        Ok((
            self.org_id,
            Event {
                id: self.id,
                seq: self.seq,
                occurred_at: self.occurred_at,
                actor: Actor {
                    kind: ActorKind::parse(&self.actor_kind)?,
                    id: self.actor_id,
                    label: self.actor_label,
                },
                action: self.action,
                target_kind: self.target_kind,
                target_id: self.target_id,
                details: self.details,
                prev_hash: self.prev_hash,
                hash: self.hash,
            },
        ))
    }
}

const COLUMNS: &str = "id, org_id, seq, occurred_at, actor_kind, actor_id, actor_label, action, \
                       target_kind, target_id, details, prev_hash, hash";

/// Records one event in the caller's transaction and returns it with its place in the chain.
pub async fn append(tx: &mut OrgTx, event: &NewEvent<'_>) -> Result<Event> {
    let org = tx.org().0;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('audit:' || $1::text, 0))")
        .bind(org)
        .execute(tx.conn())
        .await?;
    let last: Option<(i64, String)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_events WHERE org_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(org)
    .fetch_optional(tx.conn())
    .await?;
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS_HASH.to_string()),
    };
    // Postgres keeps microseconds; hash what will be read back.
    let now = OffsetDateTime::now_utc();
    let occurred_at = now
        .replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now);
    let mut stored = Event {
        id: Uuid::now_v7(),
        seq,
        occurred_at,
        actor: event.actor.clone(),
        action: event.action.to_string(),
        target_kind: event.target_kind.to_string(),
        target_id: event.target_id.clone(),
        details: event.details.clone(),
        prev_hash,
        hash: String::new(),
    };
    stored.hash = chain_hash(org, &stored);
    sqlx::query(
        "INSERT INTO audit_events (id, org_id, seq, occurred_at, actor_kind, actor_id, actor_label,
                                   action, target_kind, target_id, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(stored.id)
    .bind(org)
    .bind(stored.seq)
    .bind(stored.occurred_at)
    .bind(stored.actor.kind.as_str())
    .bind(stored.actor.id)
    .bind(&stored.actor.label)
    .bind(&stored.action)
    .bind(&stored.target_kind)
    .bind(&stored.target_id)
    .bind(&stored.details)
    .bind(&stored.prev_hash)
    .bind(&stored.hash)
    .execute(tx.conn())
    .await?;
    Ok(stored)
}

/// What to list: everything, or the events about one object.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub action_prefix: Option<String>,
}

/// A page of events, newest first. The cursor is the `seq` to continue below.
pub struct EventPage {
    pub items: Vec<Event>,
    pub next_cursor: Option<String>,
}

/// Parses a cursor from [`list`]'s `next_cursor`.
pub fn parse_cursor(raw: &str) -> Result<i64> {
    raw.strip_prefix("a1.")
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|seq| *seq > 0)
        .ok_or(StoreError::InvalidCursor)
}

pub async fn list(
    tx: &mut OrgTx,
    filter: &Filter,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<EventPage> {
    let org = tx.org().0;
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events
          WHERE org_id = $1 AND ($2::bigint IS NULL OR seq < $2)
            AND ($3::text IS NULL OR target_kind = $3)
            AND ($4::text IS NULL OR target_id = $4)
            AND ($5::text IS NULL OR starts_with(action, $5))
          ORDER BY seq DESC LIMIT $6"
    )))
    .bind(org)
    .bind(before_seq)
    .bind(&filter.target_kind)
    .bind(&filter.target_id)
    .bind(&filter.action_prefix)
    .bind(limit + 1)
    .fetch_all(tx.conn())
    .await?;
    let more = rows.len() as i64 > limit;
    let mut items = rows
        .into_iter()
        .map(|r| r.into_event().map(|(_, e)| e))
        .collect::<Result<Vec<_>>>()?;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(|e| format!("a1.{}", e.seq))
    } else {
        None
    };
    Ok(EventPage { items, next_cursor })
}

/// The result of checking an organization's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    pub events: i64,
    /// The first `seq` whose row no longer matches the chain, if any.
    pub broken_at: Option<i64>,
}

impl ChainCheck {
    pub fn intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// Recomputes the whole chain of the transaction's organization.
pub async fn verify_chain(tx: &mut OrgTx) -> Result<ChainCheck> {
    let org = tx.org().0;
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM audit_events WHERE org_id = $1 ORDER BY seq"
    )))
    .bind(org)
    .fetch_all(tx.conn())
    .await?;
    let mut expected_prev = GENESIS_HASH.to_string();
    let total = rows.len() as i64;
    for (index, row) in rows.into_iter().enumerate() {
        let expected_seq = index as i64 + 1;
        let (row_org, event) = row.into_event()?;
        let intact = event.seq == expected_seq
            && event.prev_hash == expected_prev
            && event.hash == chain_hash(row_org, &event);
        if !intact {
            return Ok(ChainCheck {
                events: total,
                broken_at: Some(event.seq),
            });
        }
        expected_prev = event.hash;
    }
    Ok(ChainCheck {
        events: total,
        broken_at: None,
    })
}

fn chain_hash(org: Uuid, e: &Event) -> String {
    let content = Value::Array(vec![
        Value::String(org.to_string()),
        Value::from(e.seq),
        Value::String(e.id.to_string()),
        Value::from(e.occurred_at.unix_timestamp_nanos() as i64 / 1_000),
        Value::String(e.actor.kind.as_str().to_string()),
        e.actor
            .id
            .map(|id| Value::String(id.to_string()))
            .unwrap_or(Value::Null),
        Value::String(e.actor.label.clone()),
        Value::String(e.action.clone()),
        Value::String(e.target_kind.clone()),
        e.target_id
            .clone()
            .map(Value::String)
            .unwrap_or(Value::Null),
        e.details.clone(),
    ]);
    let mut bytes = e.prev_hash.as_bytes().to_vec();
    canonical_json(&content, &mut bytes);
    latchkey_crypto::sha256_hex(&bytes)
}

/// JSON with object keys sorted at every level, so the bytes do not depend on the order in
/// which jsonb (or serde_json's map) hands keys back.
fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(key).unwrap_or_default());
                out.push(b':');
                canonical_json(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend(serde_json::to_vec(scalar).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_json;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let mut a = Vec::new();
        canonical_json(
            &json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}}),
            &mut a,
        );
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }
}
