//! A campaign's progress over time: how many items were decided, undecided and revoked (the
//! access actually removed) at evenly spaced moments from its start until now or its end.

use crate::report::revoked_at;
use latchkey_store::reviews::Item;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Point {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub decided: i64,
    pub undecided: i64,
    pub revoked: i64,
}

/// `steps + 1` points from `start` to `end` (both included).
pub fn timeline(
    items: &[Item],
    start: OffsetDateTime,
    end: OffsetDateTime,
    steps: u32,
) -> Vec<Point> {
    let steps = steps.max(1);
    let end = end.max(start);
    let span = end - start;
    let total = items.len() as i64;
    (0..=steps)
        .map(|k| {
            let at = if k == steps {
                end
            } else {
                start + span * (f64::from(k) / f64::from(steps))
            };
            let decided = items
                .iter()
                .filter(|i| i.decided_at.is_some_and(|d| d <= at))
                .count() as i64;
            let revoked = items
                .iter()
                .filter(|i| revoked_at(i).is_some_and(|d| d <= at))
                .count() as i64;
            Point {
                at,
                decided,
                undecided: total - decided,
                revoked,
            }
        })
        .collect()
}
