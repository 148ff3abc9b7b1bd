//! Who may decide a stage: the stage's rules resolved to Latchkey users at the moment the
//! stage begins. Entra-side roles (app owners, the manager, group members) count once the
//! person has signed in to Latchkey with that Entra account. The requester is left out
//! unless the policy allows self-approval; a stage nobody can decide falls back to the
//! organization's Super Administrators.

use crate::policy::{ApproverRule, Stage};
use latchkey_core::UserId;
use latchkey_store::access_policies::EntitlementInfo;
use latchkey_store::access_requests::{self as store, Request};
use latchkey_store::{OrgTx, Result, connectors};
use uuid::Uuid;

/// The tenant ID a connector's settings name (lower-case), if configured.
pub fn tenant_of(info: &EntitlementInfo) -> Option<String> {
    info.connector_settings
        .as_ref()
        .and_then(|s| s.pointer("/auth/tenant_id"))
        .and_then(|t| t.as_str())
        .map(str::to_lowercase)
}

/// The people who may decide `stage` of `request`, each with why.
pub async fn resolve(
    tx: &mut OrgTx,
    request: &Request,
    info: &EntitlementInfo,
    stage: &Stage,
    allow_self: bool,
) -> Result<Vec<(UserId, String)>> {
    let tenant = tenant_of(info);
    let mut found: Vec<(Uuid, String)> = Vec::new();
    for rule in &stage.approvers {
        let why = rule.label().to_string();
        let users: Vec<Uuid> = match rule {
            ApproverRule::User { user_id } => {
                if store::user_enabled(tx, *user_id).await? {
                    vec![*user_id]
                } else {
                    vec![]
                }
            }
            ApproverRule::ConnectorOwners => connectors::owners(tx, info.connector_id)
                .await?
                .into_iter()
                .map(|o| o.user_id)
                .collect(),
            ApproverRule::AppOwners => match &tenant {
                Some(t) => {
                    let owners = store::resource_owner_object_ids(tx, info.resource_id).await?;
                    store::users_for_object_ids(tx, t, &owners).await?
                }
                None => vec![],
            },
            ApproverRule::Manager => {
                let manager = store::resource_profile(tx, request.principal_id)
                    .await?
                    .and_then(|(_, p)| {
                        p.get("manager_id")
                            .and_then(|m| m.as_str())
                            .map(str::to_string)
                    });
                match (&tenant, manager) {
                    (Some(t), Some(m)) => store::users_for_object_ids(tx, t, &[m]).await?,
                    _ => vec![],
                }
            }
            ApproverRule::Group { group_id } => {
                let members = store::group_member_object_ids(tx, *group_id).await?;
                let mut users = Vec::new();
                let mut tenants: Vec<&String> = members.iter().map(|(_, t)| t).collect();
                tenants.sort();
                tenants.dedup();
                for t in tenants {
                    let ids: Vec<String> = members
                        .iter()
                        .filter(|(_, mt)| mt == t)
                        .map(|(o, _)| o.clone())
                        .collect();
                    users.extend(store::users_for_object_ids(tx, t, &ids).await?);
                }
                users
            }
        };
        for u in users {
            if !found.iter().any(|(x, _)| *x == u) {
                found.push((u, why.clone()));
            }
        }
    }
    let requester = request.requester_id;
    found.retain(|(u, _)| allow_self || *u != requester);
    if found.is_empty() {
        found = store::super_admins(tx)
            .await?
            .into_iter()
            .filter(|u| allow_self || *u != requester)
            .map(|u| {
                (
                    u,
                    "Super Administrator (no one else could decide this stage)".to_string(),
                )
            })
            .collect();
    }
    Ok(found.into_iter().map(|(u, w)| (UserId(u), w)).collect())
}
