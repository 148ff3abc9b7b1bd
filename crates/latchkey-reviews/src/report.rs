//! The campaign report: every item with its evidence, decision, reviewer, time, comment and
//! the result of carrying out a revoke — as JSON and CSV — and approver-quality signals per
//! decider: time to decide, keeps without opening the evidence, decisions made within
//! seconds of each other.

use latchkey_store::reviews::{self, Campaign, Counts, Item};
use latchkey_store::{OrgTx, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Two decisions by the same person closer than this count as rapid.
pub const RAPID_SECS: f64 = 5.0;

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// What carrying out a revoke led to: `(result, detail)`.
/// Results: `pending`, `verified`, `failed`, `manual_task_open`, `manual_task_done`,
/// `not_needed`; `None` for items not revoked.
pub fn provisioning_result(i: &Item) -> Option<(&'static str, String)> {
    if let Some(task) = i.revocation_task_id {
        let job_over = matches!(
            i.task_job_status.as_deref(),
            Some("failed" | "dead" | "cancelled")
        );
        return Some(match i.task_status.as_deref() {
            Some("succeeded") => (
                "verified",
                format!(
                    "Provisioning task {task} removed the access; verified in the tenant at {}",
                    i.task_verified_at.map(ts).unwrap_or_default()
                ),
            ),
            Some("failed") => ("failed", i.task_error.clone().unwrap_or_default()),
            _ if job_over => (
                "failed",
                i.task_error
                    .clone()
                    .unwrap_or_else(|| "The provisioning job stopped before finishing.".into()),
            ),
            _ => ("pending", format!("Provisioning task {task} is running")),
        });
    }
    if i.manual_task_id.is_some() {
        let reason = i.manual_reason.clone().unwrap_or_default();
        return Some(if i.manual_status.as_deref() == Some("done") {
            ("manual_task_done", reason)
        } else {
            ("manual_task_open", reason)
        });
    }
    i.revocation_note.clone().map(|n| ("not_needed", n))
}

/// When the access was actually removed (verified, or the manual task done).
pub fn revoked_at(i: &Item) -> Option<OffsetDateTime> {
    if i.task_status.as_deref() == Some("succeeded") {
        return i.task_verified_at;
    }
    if i.manual_status.as_deref() == Some("done") {
        return i.manual_completed_at;
    }
    None
}

/// How an item's access is held, in words: "Direct", or the path of groups it is inherited
/// through by name ("Via group Finance › group Finance EMEA"). A group Latchkey no longer
/// knows (deleted since) keeps its raw `group:<id>` step. `source` is the item's `direct` or
/// `group:<id>>group:<id>` path; `name_of` gives a group's name from its object id.
pub fn how_in_words<'a>(source: &str, name_of: impl Fn(&str) -> Option<&'a str>) -> String {
    if source == "direct" {
        return "Direct".into();
    }
    let parts: Vec<String> = source
        .split('>')
        .map(|p| {
            let id = p.strip_prefix("group:").unwrap_or(p);
            name_of(id)
                .map(|n| format!("group {n}"))
                .unwrap_or_else(|| p.to_string())
        })
        .collect();
    format!("Via {}", parts.join(" › "))
}

/// The names of the groups in items' inheritance paths, by connector and object id: what
/// pages, the report and the API use to put [`how_in_words`].
#[derive(Debug, Clone, Default)]
pub struct GroupNames(HashMap<(Uuid, String), String>);

impl GroupNames {
    /// The names of every group on the paths of `items`, as the connector's synced groups
    /// name them now.
    pub async fn load(tx: &mut OrgTx, items: &[Item]) -> Result<Self, StoreError> {
        let mut by_connector: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
        for i in items.iter().filter(|i| i.source != "direct") {
            for p in i.source.split('>') {
                if let Some(id) = p.strip_prefix("group:") {
                    by_connector
                        .entry(i.connector_id)
                        .or_default()
                        .push(id.to_string());
                }
            }
        }
        let mut names = HashMap::new();
        for (c, mut ids) in by_connector {
            ids.sort();
            ids.dedup();
            for (id, name) in reviews::group_names(tx, c, &ids).await? {
                names.insert((c, id), name);
            }
        }
        Ok(GroupNames(names))
    }

    /// Names given directly (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: impl IntoIterator<Item = (Uuid, String, String)>) -> Self {
        GroupNames(pairs.into_iter().map(|(c, id, n)| ((c, id), n)).collect())
    }

    /// How the item's access is held, in words.
    pub fn how(&self, i: &Item) -> String {
        how_in_words(&i.source, |id| {
            self.0
                .get(&(i.connector_id, id.to_string()))
                .map(String::as_str)
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReportRow {
    pub item_id: Uuid,
    pub resource_type: String,
    pub resource: String,
    pub entitlement: String,
    pub principal_type: String,
    pub principal: String,
    pub principal_upn: Option<String>,
    pub guest: bool,
    /// `direct` or the group path (`group:<id>>group:<id>`).
    pub how: String,
    /// The same in words, with the groups' names: "Direct", "Via group Finance › group EMEA".
    pub how_described: String,
    pub granted_since: String,
    /// Whether the tenant reports sign-ins; then `last_sign_in` null means never.
    pub sign_in_known: bool,
    pub last_sign_in: Option<String>,
    /// Who asked Latchkey for this grant (`user:<id>`, ...), when it granted it.
    pub granted_through_latchkey: Option<String>,
    /// The just-in-time request the access came from.
    pub jit_request: Option<Uuid>,
    pub recommendation: Option<String>,
    pub recommendation_reason: Option<String>,
    pub reviewer: Option<String>,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    pub bulk: bool,
    pub evidence_viewed: bool,
    pub provisioning_result: Option<String>,
    pub provisioning_detail: Option<String>,
}

impl ReportRow {
    pub fn of(i: &Item, names: &GroupNames) -> Self {
        let prov = provisioning_result(i);
        ReportRow {
            item_id: i.id,
            resource_type: i.resource_type.clone(),
            resource: i.resource_name.clone(),
            entitlement: i.entitlement_name.clone(),
            principal_type: i.principal_type.clone(),
            principal: i.principal_name.clone(),
            principal_upn: i.principal_upn.clone(),
            guest: i.principal_guest,
            how: i.source.clone(),
            how_described: names.how(i),
            granted_since: ts(i.granted_since),
            sign_in_known: i.sign_in_known,
            last_sign_in: i.last_sign_in.map(ts),
            granted_through_latchkey: i.granted_by.clone(),
            jit_request: i.access_request_id,
            recommendation: i.recommendation.clone(),
            recommendation_reason: i.recommendation_reason.clone(),
            reviewer: i.reviewer_email.clone(),
            decision: i.decision.clone(),
            decided_by: i.decided_by.clone(),
            decided_at: i.decided_at.map(ts),
            comment: i.decision_comment.clone(),
            bulk: i.bulk,
            evidence_viewed: i.evidence_viewed_at.is_some(),
            provisioning_result: prov.as_ref().map(|p| p.0.to_string()),
            provisioning_detail: prov.map(|p| p.1),
        }
    }

    fn cells(&self) -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_default();
        let b = |v: bool| if v { "yes" } else { "no" }.to_string();
        vec![
            self.item_id.to_string(),
            self.resource_type.clone(),
            self.resource.clone(),
            self.entitlement.clone(),
            self.principal_type.clone(),
            self.principal.clone(),
            o(&self.principal_upn),
            b(self.guest),
            self.how.clone(),
            self.how_described.clone(),
            self.granted_since.clone(),
            if self.sign_in_known {
                self.last_sign_in.clone().unwrap_or_else(|| "never".into())
            } else {
                "unknown".into()
            },
            o(&self.granted_through_latchkey),
            self.jit_request.map(|r| r.to_string()).unwrap_or_default(),
            o(&self.recommendation),
            o(&self.recommendation_reason),
            o(&self.reviewer),
            o(&self.decision),
            o(&self.decided_by),
            o(&self.decided_at),
            o(&self.comment),
            b(self.bulk),
            b(self.evidence_viewed),
            o(&self.provisioning_result),
            o(&self.provisioning_detail),
        ]
    }
}

/// The CSV header, in column order.
pub const CSV_COLUMNS: &[&str] = &[
    "item_id",
    "resource_type",
    "resource",
    "entitlement",
    "principal_type",
    "principal",
    "principal_upn",
    "guest",
    "how",
    "how_described",
    "granted_since",
    "last_sign_in",
    "granted_through_latchkey",
    "jit_request",
    "recommendation",
    "recommendation_reason",
    "reviewer",
    "decision",
    "decided_by",
    "decided_at",
    "comment",
    "bulk",
    "evidence_viewed",
    "provisioning_result",
    "provisioning_detail",
];

/// One CSV cell (RFC 4180 quoting). Cells a spreadsheet would run as a formula start with a
/// quote mark, so a comment like `=HYPERLINK(...)` stays text.
pub fn csv_cell(raw: &str) -> String {
    let guarded = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// Approver-quality signals of one decider.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReviewerSignals {
    /// `user:<id>` or `api_client:<id>`.
    pub decided_by: String,
    /// The reviewer's email, for people.
    pub reviewer: Option<String>,
    pub decisions: i64,
    pub kept: i64,
    pub revoked: i64,
    /// Median seconds from an item's assignment to its decision.
    pub median_seconds_to_decide: Option<i64>,
    /// Keeps decided without opening the item's evidence (people only; `None` for API clients).
    pub kept_without_evidence: Option<i64>,
    /// The same as a percentage of keeps (0–100, rounded).
    pub kept_without_evidence_pct: Option<i64>,
    /// Decisions made within [`RAPID_SECS`] of the same person's previous one.
    pub rapid_decisions: i64,
    /// Decisions made several at once.
    pub bulk_decisions: i64,
    /// Plain-language warnings for an auditor.
    pub flags: Vec<String>,
}

/// Signals per decider, ordered by decider; decisions of the end rule are not anyone's.
pub fn signals(items: &[Item]) -> Vec<ReviewerSignals> {
    let mut by: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    for i in items {
        if let (Some(d), Some(_)) = (i.decided_by.as_deref(), i.decided_at)
            && d != "end_rule"
        {
            by.entry(d).or_default().push(i);
        }
    }
    by.into_iter()
        .map(|(decider, mut its)| {
            its.sort_by_key(|i| (i.decided_at, i.id));
            let person = its[0].decided_by_user_id.is_some();
            let kept = its.iter().filter(|i| i.decision.as_deref() == Some("keep")).count() as i64;
            let revoked = its.len() as i64 - kept;
            let mut waits: Vec<i64> = its
                .iter()
                .map(|i| (i.decided_at.expect("decided") - i.assigned_at).whole_seconds().max(0))
                .collect();
            waits.sort_unstable();
            let median = (!waits.is_empty()).then(|| {
                let n = waits.len();
                if n % 2 == 1 {
                    waits[n / 2]
                } else {
                    (waits[n / 2 - 1] + waits[n / 2]) / 2
                }
            });
            let blind = person.then(|| {
                its.iter()
                    .filter(|i| i.decision.as_deref() == Some("keep") && i.evidence_viewed_at.is_none())
                    .count() as i64
            });
            let blind_pct = blind.map(|b| if kept == 0 { 0 } else { (b * 100 + kept / 2) / kept });
            let rapid = its
                .windows(2)
                .filter(|w| {
                    let gap = w[1].decided_at.expect("decided") - w[0].decided_at.expect("decided");
                    gap.as_seconds_f64() < RAPID_SECS
                })
                .count() as i64;
            let bulk = its.iter().filter(|i| i.bulk).count() as i64;
            let mut flags = Vec::new();
            if let (Some(b), Some(pct)) = (blind, blind_pct)
                && b > 0
                && pct >= 50
            {
                flags.push(format!(
                    "Kept {b} of {kept} item(s) without opening their evidence ({pct}%)."
                ));
            }
            if rapid > 0 && rapid * 2 >= its.len() as i64 {
                flags.push(format!(
                    "{rapid} of {} decision(s) came within {RAPID_SECS} seconds of the previous one.",
                    its.len()
                ));
            }
            let reviewer = its
                .iter()
                .find(|i| i.decided_by_user_id.is_some() && i.decided_by_user_id == i.reviewer_id)
                .and_then(|i| i.reviewer_email.clone());
            ReviewerSignals {
                decided_by: decider.to_string(),
                reviewer,
                decisions: its.len() as i64,
                kept,
                revoked,
                median_seconds_to_decide: median,
                kept_without_evidence: blind,
                kept_without_evidence_pct: blind_pct,
                rapid_decisions: rapid,
                bulk_decisions: bulk,
                flags,
            }
        })
        .collect()
}

/// The campaign as the report heads it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CampaignHead {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub end_rule: String,
    pub deadline: String,
    pub created_at: String,
    pub created_by: String,
    pub closed_at: Option<String>,
    pub closed_reason: Option<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub campaign: CampaignHead,
    pub items: Vec<ReportRow>,
    pub signals: Vec<ReviewerSignals>,
}

pub fn build(c: &Campaign, counts: Counts, items: &[Item], names: &GroupNames) -> Report {
    Report {
        campaign: CampaignHead {
            id: c.id,
            name: c.name.clone(),
            status: c.status.clone(),
            end_rule: c.end_rule.clone(),
            deadline: ts(c.deadline),
            created_at: ts(c.created_at),
            created_by: c.created_by.clone(),
            closed_at: c.closed_at.map(ts),
            closed_reason: c.closed_reason.clone(),
            counts,
        },
        items: items.iter().map(|i| ReportRow::of(i, names)).collect(),
        signals: signals(items),
    }
}

/// The items as CSV (header line, then one line per item; CRLF line ends per RFC 4180).
pub fn csv(report: &Report) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for r in &report.items {
        let cells: Vec<String> = r.cells().iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::macros::datetime;

    /// A decided item for tests (`by` is `user:<id>`, `api_client:<id>` or `end_rule`).
    pub(crate) fn item(
        n: u128,
        by: &str,
        decision: &str,
        at: OffsetDateTime,
        viewed: bool,
    ) -> Item {
        let user = by
            .strip_prefix("user:")
            .map(|u| Uuid::parse_str(u).unwrap());
        Item {
            id: Uuid::from_u128(n),
            campaign_id: Uuid::nil(),
            campaign_name: "c".into(),
            connector_id: Uuid::nil(),
            grant_id: Uuid::nil(),
            entitlement_id: Uuid::nil(),
            principal_id: Uuid::nil(),
            resource_id: Uuid::nil(),
            principal_type: "user".into(),
            principal_name: format!("p{n}"),
            principal_external_id: String::new(),
            principal_upn: None,
            principal_guest: false,
            principal_enabled: Some(true),
            subject_user_id: None,
            resource_type: "group".into(),
            resource_name: "g".into(),
            entitlement_slug: "members".into(),
            entitlement_name: "Members".into(),
            grant_kind: "group_members".into(),
            source: "direct".into(),
            granted_since: datetime!(2026-01-01 0:00 UTC),
            sign_in_known: false,
            last_sign_in: None,
            granted_by_task_id: None,
            granted_by: None,
            access_request_id: None,
            access_request_expires_at: None,
            recommendation: None,
            recommendation_reason: None,
            reviewer_id: user,
            reviewer_name: None,
            reviewer_email: Some("r@x".into()),
            reviewer_source: None,
            assigned_at: datetime!(2026-02-01 0:00 UTC),
            evidence_viewed_at: viewed.then_some(at),
            decision: Some(decision.into()),
            decision_comment: None,
            decided_at: Some(at),
            decided_by: Some(by.into()),
            decided_by_user_id: user,
            bulk: false,
            revocation_task_id: None,
            task_status: None,
            task_error: None,
            task_verified_at: None,
            task_job_status: None,
            manual_task_id: None,
            manual_status: None,
            manual_reason: None,
            manual_completed_at: None,
            revocation_note: None,
        }
    }

    #[test]
    fn signals_count_blind_keeps_rapid_decisions_and_the_median_wait() {
        let u = format!("user:{}", Uuid::from_u128(9));
        let items = vec![
            item(1, &u, "keep", datetime!(2026-02-01 0:01:00 UTC), false),
            item(2, &u, "keep", datetime!(2026-02-01 0:01:02 UTC), false),
            item(3, &u, "revoke", datetime!(2026-02-01 0:01:04 UTC), true),
            item(4, &u, "keep", datetime!(2026-02-01 1:00:00 UTC), true),
            item(5, "end_rule", "keep", datetime!(2026-03-01 0:00 UTC), false),
        ];
        let s = signals(&items);
        assert_eq!(s.len(), 1);
        let s = &s[0];
        assert_eq!((s.decisions, s.kept, s.revoked), (4, 3, 1));
        assert_eq!(s.median_seconds_to_decide, Some(63));
        assert_eq!(s.kept_without_evidence, Some(2));
        assert_eq!(s.kept_without_evidence_pct, Some(67));
        assert_eq!(s.rapid_decisions, 2);
        assert_eq!(s.flags.len(), 2, "{:?}", s.flags);
        assert_eq!(s.reviewer.as_deref(), Some("r@x"));
    }

    #[test]
    fn the_provisioning_result_says_what_became_of_a_revoke() {
        let at = datetime!(2026-02-01 0:01:00 UTC);
        let by = format!("user:{}", Uuid::from_u128(9));
        let kept = item(1, &by, "keep", at, true);
        assert_eq!(provisioning_result(&kept), None);

        let mut i = item(2, &by, "revoke", at, true);
        let task = Uuid::from_u128(20);
        i.revocation_task_id = Some(task);
        i.task_status = Some("running".into());
        i.task_job_status = Some("running".into());
        assert_eq!(
            provisioning_result(&i),
            Some(("pending", format!("Provisioning task {task} is running")))
        );
        // The job gave up before the task recorded an outcome.
        i.task_job_status = Some("dead".into());
        assert_eq!(
            provisioning_result(&i).map(|r| r.0),
            Some("failed"),
            "a dead job is a failed revoke"
        );
        i.task_status = Some("failed".into());
        i.task_error = Some("Graph answered 403".into());
        assert_eq!(
            provisioning_result(&i),
            Some(("failed", "Graph answered 403".to_string()))
        );
        assert_eq!(revoked_at(&i), None, "a failed revoke removed nothing");
        i.task_status = Some("succeeded".into());
        i.task_verified_at = Some(datetime!(2026-02-01 0:02:00 UTC));
        assert_eq!(
            provisioning_result(&i),
            Some((
                "verified",
                format!(
                    "Provisioning task {task} removed the access; verified in the tenant at 2026-02-01T00:02:00Z"
                )
            ))
        );
        assert_eq!(revoked_at(&i), i.task_verified_at);

        let mut m = item(3, &by, "revoke", at, true);
        m.manual_task_id = Some(Uuid::from_u128(30));
        m.manual_status = Some("open".into());
        m.manual_reason = Some("manage it in Exchange".into());
        assert_eq!(
            provisioning_result(&m),
            Some(("manual_task_open", "manage it in Exchange".to_string()))
        );
        m.manual_status = Some("done".into());
        m.manual_completed_at = Some(datetime!(2026-02-02 0:00 UTC));
        assert_eq!(
            provisioning_result(&m).map(|r| r.0),
            Some("manual_task_done")
        );
        assert_eq!(revoked_at(&m), m.manual_completed_at);

        let mut gone = item(4, &by, "revoke", at, true);
        gone.revocation_note = Some("already gone".into());
        assert_eq!(
            provisioning_result(&gone),
            Some(("not_needed", "already gone".to_string()))
        );
    }

    #[test]
    fn the_report_names_the_groups_access_is_inherited_through() {
        let at = datetime!(2026-02-01 0:01:00 UTC);
        let by = format!("user:{}", Uuid::from_u128(9));
        let connector = Uuid::from_u128(70);
        let (outer, inner, gone) = (
            Uuid::from_u128(71),
            Uuid::from_u128(72),
            Uuid::from_u128(73),
        );
        let names = GroupNames::from_pairs([
            (connector, outer.to_string(), "Finance Admins".to_string()),
            (connector, inner.to_string(), "Admins, EMEA".to_string()),
            // Another connector's group of the same id is not this one.
            (
                Uuid::from_u128(80),
                gone.to_string(),
                "Elsewhere".to_string(),
            ),
        ]);
        let mut i = item(1, &by, "keep", at, true);
        i.connector_id = connector;
        assert_eq!(ReportRow::of(&i, &names).how_described, "Direct");
        i.source = format!("group:{outer}>group:{inner}");
        let row = ReportRow::of(&i, &names);
        assert_eq!(row.how, i.source, "the raw path stays");
        assert_eq!(
            row.how_described,
            "Via group Finance Admins › group Admins, EMEA"
        );
        i.source = format!("group:{outer}>group:{gone}");
        assert_eq!(
            ReportRow::of(&i, &names).how_described,
            format!("Via group Finance Admins › group:{gone}"),
            "a group unknown to the connector keeps its id"
        );

        let c = Campaign {
            id: Uuid::from_u128(60),
            name: "c".into(),
            status: "active".into(),
            spec: serde_json::json!({}),
            end_rule: "keep".into(),
            deadline: at,
            template_id: None,
            created_by: "system".into(),
            created_at: at,
            closed_at: None,
            closed_reason: None,
            closed_by: None,
        };
        i.source = format!("group:{outer}>group:{inner}");
        let report = build(&c, Counts::default(), std::slice::from_ref(&i), &names);
        let text = csv(&report);
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = header.iter().position(|h| *h == "how_described").unwrap();
        assert_eq!(header[col - 1], "how");
        assert!(
            text.contains(&format!(
                "group:{outer}>group:{inner},\"Via group Finance Admins › group Admins, EMEA\","
            )),
            "{text}"
        );
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("-x,y"), "\"'-x,y\"");
    }
}
