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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::item;
    use time::macros::datetime;

    #[test]
    fn counts_at_each_moment_what_was_decided_and_what_was_removed_by_then() {
        let by = format!("user:{}", uuid::Uuid::from_u128(9));
        let mut kept = item(1, &by, "keep", datetime!(2026-02-01 1:00 UTC), true);
        let mut revoked = item(2, &by, "revoke", datetime!(2026-02-01 2:00 UTC), true);
        // Verified in the tenant an hour after the decision.
        revoked.revocation_task_id = Some(uuid::Uuid::from_u128(20));
        revoked.task_status = Some("succeeded".into());
        revoked.task_verified_at = Some(datetime!(2026-02-01 3:00 UTC));
        let mut manual = item(3, &by, "revoke", datetime!(2026-02-01 2:00 UTC), true);
        // A manual task still open: decided, not (yet) removed.
        manual.manual_task_id = Some(uuid::Uuid::from_u128(30));
        manual.manual_status = Some("open".into());
        let mut open = item(4, &by, "keep", datetime!(2026-02-01 0:00 UTC), false);
        open.decision = None;
        open.decided_at = None;
        kept.assigned_at = datetime!(2026-02-01 0:00 UTC);
        let items = vec![kept, revoked, manual, open];
        let points = timeline(
            &items,
            datetime!(2026-02-01 0:00 UTC),
            datetime!(2026-02-01 4:00 UTC),
            4,
        );
        let got: Vec<(OffsetDateTime, i64, i64, i64)> = points
            .iter()
            .map(|p| (p.at, p.decided, p.undecided, p.revoked))
            .collect();
        assert_eq!(
            got,
            vec![
                (datetime!(2026-02-01 0:00 UTC), 0, 4, 0),
                (datetime!(2026-02-01 1:00 UTC), 1, 3, 0),
                (datetime!(2026-02-01 2:00 UTC), 3, 1, 0),
                (datetime!(2026-02-01 3:00 UTC), 3, 1, 1),
                (datetime!(2026-02-01 4:00 UTC), 3, 1, 1),
            ]
        );
    }

    #[test]
    fn an_empty_or_instant_campaign_still_has_a_start_and_an_end() {
        let at = datetime!(2026-02-01 0:00 UTC);
        let points = timeline(&[], at, at - time::Duration::hours(1), 0);
        assert_eq!(points.len(), 2);
        assert!(
            points
                .iter()
                .all(|p| p.at == at && p.decided == 0 && p.undecided == 0)
        );
    }
}
