//! Cursor pagination. Ids are UUIDv7 (time-ordered), so "after this id" is a stable cursor.

use crate::StoreError;
use base64_lite::{decode, encode};
use serde::Serialize;
use uuid::Uuid;

/// An opaque position in a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

impl Cursor {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        decode(raw).map(Cursor).ok_or(StoreError::InvalidCursor)
    }

    pub fn encode(&self) -> String {
        encode(self.0)
    }
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from `limit + 1` fetched rows: the extra row only says there is more.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id_of: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| Cursor(id_of(r)).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// Clamps a requested page size to 1..=200 (default 50).
pub fn clamp_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(50).clamp(1, 200)
}

mod base64_lite {
    //! Hex is enough for a 16-byte id and needs no extra dependency; prefixed so that
    //! cursors are visibly opaque and versioned.
    use uuid::Uuid;

    pub fn encode(id: Uuid) -> String {
        format!("c1.{}", id.simple())
    }

    pub fn decode(raw: &str) -> Option<Uuid> {
        raw.strip_prefix("c1.")
            .and_then(|h| Uuid::try_parse(h).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_rejects_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(Cursor::parse(&Cursor(id).encode()).unwrap().0, id);
        assert!(Cursor::parse("nope").is_err());
        assert!(Cursor::parse("c1.zz").is_err());
    }

    #[test]
    fn page_from_rows() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let p = Page::from_rows(ids.clone(), 2, |u| *u);
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next_cursor, Some(Cursor(ids[1]).encode()));
        let p = Page::from_rows(ids, 3, |u| *u);
        assert!(p.next_cursor.is_none());
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(10_000)), 200);
    }
}
