//! Sends a planned [`Step`] to Graph (idempotently) and reads it back until it shows.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use uuid::Uuid;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::plan::{GroupRel, Refusal, Step, refusal_from_graph};
use crate::graph::{GraphClient, GraphError, Query, odata_string};

/// Why a step did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionError {
    /// Graph refused it for a reason Latchkey knows and words (the stored model was stale).
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ProvisionError {
    /// Worth retrying with the queue's backoff (throttling, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(self, ProvisionError::Graph(e) if e.is_transient())
    }
}

/// What Graph did with a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// Graph answered "already exists" (grant) or "does not exist" (revoke): the tenant was
    /// already as asked, e.g. a retried job whose first attempt got through.
    pub already: bool,
    /// Graph's id of what was created (an app role assignment's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

fn rel_permission(rel: GroupRel) -> &'static str {
    match rel {
        GroupRel::Members => "GroupMember.ReadWrite.All",
        GroupRel::Owners => "Group.ReadWrite.All",
    }
}

const APP_ROLE_WRITE: &str = "AppRoleAssignment.ReadWrite.All";
const APP_WRITE: &str = "Application.ReadWrite.All";

/// Interprets the answer to an add (`adding`) or a removal: "already so" is success.
fn settle(
    result: Result<crate::graph::GraphResponse, GraphError>,
    adding: bool,
    group_name: &str,
    rel: GroupRel,
) -> Result<Applied, ProvisionError> {
    match result {
        Ok(r) => Ok(Applied {
            already: false,
            external_id: r
                .body
                .as_ref()
                .and_then(|b| b.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string),
        }),
        Err(e) if adding && e.is_already_exists() => Ok(Applied {
            already: true,
            external_id: None,
        }),
        Err(e) if !adding && e.is_already_absent() => Ok(Applied {
            already: true,
            external_id: None,
        }),
        Err(e) => match e
            .graph_message()
            .and_then(|m| refusal_from_graph(m, group_name, rel))
        {
            Some(r) if !e.is_transient() => Err(ProvisionError::Refused(r)),
            _ => Err(ProvisionError::Graph(e)),
        },
    }
}

/// Sends the step. "Already exists" on an add and "not found" on a removal are success.
/// `resource_name` is the group's or app's display name, for refusals.
pub async fn apply(
    graph: &GraphClient,
    step: &Step,
    resource_name: &str,
) -> Result<Applied, ProvisionError> {
    apply_until(graph, step, resource_name, None).await
}

/// [`apply`] for a time-bound grant: `end` (RFC 3339) becomes the PIM schedule's expiration.
pub async fn apply_until(
    graph: &GraphClient,
    step: &Step,
    resource_name: &str,
    end: Option<&str>,
) -> Result<Applied, ProvisionError> {
    match *step {
        Step::AssignRole {
            role,
            principal,
            eligible,
            via_pim,
        } => {
            let r = if via_pim {
                let expiration = match end {
                    Some(e) => serde_json::json!({"type": "afterDateTime", "endDateTime": e}),
                    None => serde_json::json!({"type": "noExpiration"}),
                };
                let body = serde_json::json!({
                    "action": "adminAssign", "principalId": principal, "roleDefinitionId": role,
                    "directoryScopeId": "/", "justification": "Granted by Latchkey",
                    "scheduleInfo": {"startDateTime": now_rfc3339(), "expiration": expiration},
                });
                let r = graph
                    .send(Method::POST, &schedule_query(eligible), Some(&body))
                    .await;
                let applied = role_answer(r, true, resource_name)?;
                if applied.already
                    && let Some(e) = end
                {
                    extend_pim_schedule(graph, role, principal, eligible, e, resource_name).await?;
                }
                return Ok(applied);
            } else {
                let body = serde_json::json!({
                    "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                    "principalId": principal, "roleDefinitionId": role, "directoryScopeId": "/",
                });
                let q = Query::v1("roleManagement/directory/roleAssignments")
                    .needs_permission("RoleManagement.ReadWrite.Directory");
                graph.send(Method::POST, &q, Some(&body)).await
            };
            role_answer(r, true, resource_name)
        }
        Step::RemoveRole {
            role,
            principal,
            eligible,
            via_pim,
        } => {
            if via_pim {
                let body = serde_json::json!({
                    "action": "adminRemove", "principalId": principal, "roleDefinitionId": role,
                    "directoryScopeId": "/", "justification": "Revoked by Latchkey",
                });
                let r = graph
                    .send(Method::POST, &schedule_query(eligible), Some(&body))
                    .await;
                role_answer(r, false, resource_name)
            } else {
                let Some(id) = find_role_grant(graph, role, principal, false).await? else {
                    return Ok(Applied {
                        already: true,
                        external_id: None,
                    });
                };
                let q = Query::v1(format!("roleManagement/directory/roleAssignments/{id}"))
                    .needs_permission("RoleManagement.ReadWrite.Directory");
                let r = graph.send(Method::DELETE, &q, None).await;
                role_answer(r, false, resource_name)
            }
        }
        Step::AddGroupLink {
            group,
            rel,
            principal,
        } => {
            let q = Query::v1(format!("groups/{group}/{}/$ref", rel.as_str()))
                .needs_permission(rel_permission(rel));
            let body = graph.directory_object_ref(&principal);
            let r = graph.send(Method::POST, &q, Some(&body)).await;
            settle(r, true, resource_name, rel)
        }
        Step::RemoveGroupLink {
            group,
            rel,
            principal,
        } => {
            let q = Query::v1(format!("groups/{group}/{}/{principal}/$ref", rel.as_str()))
                .needs_permission(rel_permission(rel));
            let r = graph.send(Method::DELETE, &q, None).await;
            settle(r, false, resource_name, rel)
        }
        Step::AddAppOwner { app, principal } => {
            let q = Query::v1(format!("servicePrincipals/{app}/owners/$ref"))
                .needs_permission(APP_WRITE);
            let body = graph.directory_object_ref(&principal);
            let r = graph.send(Method::POST, &q, Some(&body)).await;
            settle(r, true, resource_name, GroupRel::Owners)
        }
        Step::RemoveAppOwner { app, principal } => {
            let q = Query::v1(format!("servicePrincipals/{app}/owners/{principal}/$ref"))
                .needs_permission(APP_WRITE);
            let r = graph.send(Method::DELETE, &q, None).await;
            settle(r, false, resource_name, GroupRel::Owners)
        }
        Step::AssignAppRole {
            app,
            app_role,
            principal,
            principal_is_app,
        } => {
            check_assignable(graph, app, app_role, principal_is_app, resource_name).await?;
            let q = Query::v1(format!("servicePrincipals/{app}/appRoleAssignedTo"))
                .needs_permission(APP_ROLE_WRITE);
            let body = serde_json::json!({
                "principalId": principal, "resourceId": app, "appRoleId": app_role,
            });
            let r = graph.send(Method::POST, &q, Some(&body)).await;
            if let Err(e) = &r
                && e.graph_message().is_some_and(|m| {
                    m.to_ascii_lowercase()
                        .contains("not allowed for this principal type")
                })
            {
                return Err(Refusal::AppRoleNotAssignable {
                    app: resource_name.to_string(),
                    kind: kind_name(principal_is_app).into(),
                    allowed: "other principal types".into(),
                }
                .into());
            }
            let mut applied = settle(r, true, resource_name, GroupRel::Members)?;
            if applied.external_id.is_none() {
                applied.external_id = find_assignment(graph, app, app_role, principal).await?;
            }
            Ok(applied)
        }
        Step::AssignLicense { user, sku } => {
            let state = license_state(graph, user, sku).await?;
            if state.direct {
                return Ok(Applied {
                    already: true,
                    external_id: None,
                });
            }
            if state.usage_location.is_none() {
                return Err(Refusal::NoUsageLocation { user: state.name }.into());
            }
            if !state.held && seats_left(graph, sku).await? == Some(0) {
                return Err(Refusal::NoSeats {
                    sku: resource_name.to_string(),
                }
                .into());
            }
            let body = serde_json::json!({"addLicenses": [{"disabledPlans": [], "skuId": sku}], "removeLicenses": []});
            let r = graph
                .send(Method::POST, &license_query(user), Some(&body))
                .await;
            license_answer(r, true, resource_name, &state.name)
        }
        Step::RemoveLicense { user, sku } => {
            let body = serde_json::json!({"addLicenses": [], "removeLicenses": [sku]});
            let r = graph
                .send(Method::POST, &license_query(user), Some(&body))
                .await;
            license_answer(r, false, resource_name, &user.to_string())
        }
        Step::RemoveAppRole {
            app,
            app_role,
            principal,
        } => {
            let Some(id) = find_assignment(graph, app, app_role, principal).await? else {
                return Ok(Applied {
                    already: true,
                    external_id: None,
                });
            };
            let q = Query::v1(format!("servicePrincipals/{app}/appRoleAssignedTo/{id}"))
                .needs_permission(APP_ROLE_WRITE);
            let r = graph.send(Method::DELETE, &q, None).await;
            let mut applied = settle(r, false, resource_name, GroupRel::Members)?;
            applied.external_id = Some(id);
            Ok(applied)
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A time-bound PIM grant asked for again with a later end (a JIT extension): moves the
/// schedule's end out with `adminUpdate`, so that Entra does not end the access before
/// Latchkey does. A permanent schedule, or one that already ends later, is left alone
/// (Latchkey never shortens access it did not grant).
async fn extend_pim_schedule(
    graph: &GraphClient,
    role: Uuid,
    principal: Uuid,
    eligible: bool,
    end: &str,
    resource_name: &str,
) -> Result<(), ProvisionError> {
    // `end` is Latchkey's own RFC 3339 rendering (the task's `until`).
    let Ok(wanted) =
        time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339)
    else {
        return Ok(());
    };
    let Some(current) = pim_schedule_end(graph, role, principal, eligible).await? else {
        return Ok(());
    };
    if current.is_none_or(|c| c >= wanted) {
        return Ok(());
    }
    let body = serde_json::json!({
        "action": "adminUpdate", "principalId": principal, "roleDefinitionId": role,
        "directoryScopeId": "/", "justification": "Extended by Latchkey",
        "scheduleInfo": {"startDateTime": now_rfc3339(),
                         "expiration": {"type": "afterDateTime", "endDateTime": end}},
    });
    let r = graph
        .send(Method::POST, &schedule_query(eligible), Some(&body))
        .await;
    role_answer(r, true, resource_name).map(|_| ())
}

/// The end of `principal`'s current tenant-wide PIM schedule instance of `role`:
/// `None` when there is none, `Some(None)` when it is permanent.
async fn pim_schedule_end(
    graph: &GraphClient,
    role: Uuid,
    principal: Uuid,
    eligible: bool,
) -> Result<Option<Option<time::OffsetDateTime>>, GraphError> {
    let q = if eligible {
        Query::v1("roleManagement/directory/roleEligibilityScheduleInstances")
            .needs_permission("RoleEligibilitySchedule.ReadWrite.Directory")
    } else {
        Query::v1("roleManagement/directory/roleAssignmentScheduleInstances")
            .needs_permission("RoleAssignmentSchedule.ReadWrite.Directory")
    };
    let q = q
        .filter(format!(
            "principalId eq {} and roleDefinitionId eq {}",
            odata_string(&principal.to_string()),
            odata_string(&role.to_string())
        ))
        .select(&[
            "id",
            "principalId",
            "roleDefinitionId",
            "directoryScopeId",
            "endDateTime",
        ]);
    let mut items = graph.items::<Value>(q);
    while let Some(item) = items.try_next().await? {
        let is = |k: &str, v: &Uuid| {
            item.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(&v.to_string()))
        };
        let tenant_wide = item
            .get("directoryScopeId")
            .and_then(Value::as_str)
            .is_none_or(|s| s == "/");
        if is("principalId", &principal) && is("roleDefinitionId", &role) && tenant_wide {
            let end = item
                .get("endDateTime")
                .and_then(Value::as_str)
                .and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
            return Ok(Some(end));
        }
    }
    Ok(None)
}

fn schedule_query(eligible: bool) -> Query {
    if eligible {
        Query::v1("roleManagement/directory/roleEligibilityScheduleRequests")
            .needs_permission("RoleEligibilitySchedule.ReadWrite.Directory")
    } else {
        Query::v1("roleManagement/directory/roleAssignmentScheduleRequests")
            .needs_permission("RoleAssignmentSchedule.ReadWrite.Directory")
    }
}

fn role_answer(
    r: Result<crate::graph::GraphResponse, GraphError>,
    adding: bool,
    role_name: &str,
) -> Result<Applied, ProvisionError> {
    match r {
        Ok(_) => Ok(Applied {
            already: false,
            external_id: None,
        }),
        Err(e) => {
            let code = e.code().unwrap_or("");
            let m = e.graph_message().unwrap_or("").to_ascii_lowercase();
            let already = if adding {
                code == "RoleAssignmentExists"
                    || m.contains("conflicting object")
                    || e.is_already_exists()
            } else {
                code == "RoleAssignmentDoesNotExist" || e.is_not_found()
            };
            if already {
                Ok(Applied {
                    already: true,
                    external_id: None,
                })
            } else if matches!(e, GraphError::NotPremium { .. }) {
                Err(Refusal::NeedsP2 {
                    role: role_name.to_string(),
                }
                .into())
            } else {
                Err(ProvisionError::Graph(e))
            }
        }
    }
}

/// The id of `principal`'s active assignment (or eligibility schedule) of `role`.
pub async fn find_role_grant(
    graph: &GraphClient,
    role: Uuid,
    principal: Uuid,
    eligible: bool,
) -> Result<Option<String>, GraphError> {
    let path = if eligible {
        "roleManagement/directory/roleEligibilitySchedules"
    } else {
        "roleManagement/directory/roleAssignments"
    };
    let q = Query::v1(path)
        .filter(format!(
            "principalId eq {} and roleDefinitionId eq {}",
            odata_string(&principal.to_string()),
            odata_string(&role.to_string())
        ))
        .select(&["id", "principalId", "roleDefinitionId", "directoryScopeId"]);
    let mut items = graph.items::<Value>(q);
    while let Some(item) = items.try_next().await? {
        let is = |k: &str, v: &Uuid| {
            item.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(&v.to_string()))
        };
        let tenant_wide = item
            .get("directoryScopeId")
            .and_then(Value::as_str)
            .is_none_or(|s| s == "/");
        if is("principalId", &principal) && is("roleDefinitionId", &role) && tenant_wide {
            return Ok(item.get("id").and_then(Value::as_str).map(str::to_string));
        }
    }
    Ok(None)
}

/// Graph's id of the grant a verified step left (app role assignment, role assignment or
/// eligibility schedule), to store it as the sync would.
pub async fn external_id_after(
    graph: &GraphClient,
    step: &Step,
    applied: &Applied,
) -> Result<Option<String>, GraphError> {
    match *step {
        Step::AssignRole {
            role,
            principal,
            eligible,
            ..
        } => find_role_grant(graph, role, principal, eligible).await,
        _ => Ok(applied.external_id.clone()),
    }
}

fn license_query(user: Uuid) -> Query {
    Query::v1(format!("users/{user}/assignLicense")).needs_permission("User.ReadWrite.All")
}

fn license_answer(
    r: Result<crate::graph::GraphResponse, GraphError>,
    adding: bool,
    sku_name: &str,
    user: &str,
) -> Result<Applied, ProvisionError> {
    match r {
        Ok(_) => Ok(Applied {
            already: false,
            external_id: None,
        }),
        Err(e) => {
            let m = e.graph_message().unwrap_or("").to_ascii_lowercase();
            if !adding && m.contains("does not have a corresponding license") {
                Ok(Applied {
                    already: true,
                    external_id: None,
                })
            } else if m.contains("invalid usage location") {
                Err(Refusal::NoUsageLocation {
                    user: user.to_string(),
                }
                .into())
            } else if m.contains("does not have any available licenses") {
                Err(Refusal::NoSeats {
                    sku: sku_name.to_string(),
                }
                .into())
            } else if m.contains("inherited from a group") {
                Err(Refusal::Inherited {
                    principal: user.to_string(),
                    via: "group-based licensing".into(),
                }
                .into())
            } else {
                Err(ProvisionError::Graph(e))
            }
        }
    }
}

/// A user's relation to a SKU, read before a licence write.
struct LicenseState {
    name: String,
    usage_location: Option<String>,
    /// Holds the SKU somehow (directly or through a group): no extra seat is needed.
    held: bool,
    /// Holds it by direct assignment.
    direct: bool,
}

async fn license_state(
    graph: &GraphClient,
    user: Uuid,
    sku: Uuid,
) -> Result<LicenseState, GraphError> {
    let v: Value = graph
        .get(&Query::v1(format!("users/{user}")).select(&[
            "id",
            "displayName",
            "userPrincipalName",
            "usageLocation",
            "licenseAssignmentStates",
        ]))
        .await?;
    let sku_s = sku.to_string();
    let states: Vec<&Value> = v
        .get("licenseAssignmentStates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|s| s.get("skuId").and_then(Value::as_str) == Some(sku_s.as_str()))
                .collect()
        })
        .unwrap_or_default();
    Ok(LicenseState {
        name: v
            .get("userPrincipalName")
            .or(v.get("displayName"))
            .and_then(Value::as_str)
            .unwrap_or(&user.to_string())
            .to_string(),
        usage_location: v
            .get("usageLocation")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        held: !states.is_empty(),
        direct: states
            .iter()
            .any(|s| s.get("assignedByGroup").is_none_or(Value::is_null)),
    })
}

/// Seats of a SKU not yet in use (`None` when the SKU is not listed).
async fn seats_left(graph: &GraphClient, sku: Uuid) -> Result<Option<i64>, GraphError> {
    let v: Value = graph.get(&Query::v1("subscribedSkus")).await?;
    let sku_s = sku.to_string();
    Ok(v.get("value")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|s| s.get("skuId").and_then(Value::as_str) == Some(sku_s.as_str()))
        })
        .map(|s| {
            let enabled = s
                .get("prepaidUnits")
                .and_then(|p| p.get("enabled"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let used = s.get("consumedUnits").and_then(Value::as_i64).unwrap_or(0);
            (enabled - used).max(0)
        }))
}

fn kind_name(principal_is_app: bool) -> &'static str {
    if principal_is_app {
        "service principal"
    } else {
        "user or group"
    }
}

/// Refuses, before any write, an app role whose allowed member types exclude the principal.
async fn check_assignable(
    graph: &GraphClient,
    app: Uuid,
    app_role: Uuid,
    principal_is_app: bool,
    app_name: &str,
) -> Result<(), ProvisionError> {
    if app_role.is_nil() {
        // Default access: assignable to anyone.
        return Ok(());
    }
    let sp: Value = graph
        .get(&Query::v1(format!("servicePrincipals/{app}")).select(&["id", "appRoles"]))
        .await?;
    let role = sp
        .get("appRoles")
        .and_then(Value::as_array)
        .and_then(|roles| {
            roles
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(&app_role.to_string()))
        });
    let Some(role) = role else {
        return Err(Refusal::AppRoleMissing {
            app: app_name.to_string(),
            role: app_role.to_string(),
        }
        .into());
    };
    let allowed: Vec<&str> = role
        .get("allowedMemberTypes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let needed = if principal_is_app {
        "Application"
    } else {
        "User"
    };
    if allowed.contains(&needed) {
        Ok(())
    } else {
        Err(Refusal::AppRoleNotAssignable {
            app: app_name.to_string(),
            kind: kind_name(principal_is_app).into(),
            allowed: if allowed.is_empty() {
                "no one".into()
            } else {
                allowed
                    .iter()
                    .map(|t| {
                        if *t == "User" {
                            "users and groups"
                        } else {
                            "applications"
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            },
        }
        .into())
    }
}

/// The id of `principal`'s assignment of `app_role` on `app`, reading the app's assignments.
async fn find_assignment(
    graph: &GraphClient,
    app: Uuid,
    app_role: Uuid,
    principal: Uuid,
) -> Result<Option<String>, GraphError> {
    let q = Query::v1(format!("servicePrincipals/{app}/appRoleAssignedTo"))
        .select(&["id", "appRoleId", "principalId"])
        .top(999);
    let mut items = graph.items::<Value>(q);
    while let Some(item) = items.try_next().await? {
        let is = |k: &str, v: &Uuid| {
            item.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(&v.to_string()))
        };
        if is("principalId", &principal) && is("appRoleId", &app_role) {
            return Ok(item.get("id").and_then(Value::as_str).map(str::to_string));
        }
    }
    Ok(None)
}

/// How long to keep reading a change back before calling it unverified (Entra replicates
/// writes to its read replicas with a delay of seconds, occasionally more).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Give up after this long.
    pub timeout: Duration,
    /// Wait before the second read; doubled each time up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            timeout: Duration::from_secs(60),
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// The outcome of reading a change back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Verification {
    Verified { reads: u32 },
    Failed { why: String, reads: u32 },
}

/// Whether the step's effect is visible in Graph now: `true` when a grant is there / a revoked
/// grant is gone.
pub async fn in_effect(graph: &GraphClient, step: &Step) -> Result<bool, GraphError> {
    let (parent, rel, principal, want_present) = match *step {
        Step::AddGroupLink {
            group,
            rel,
            principal,
        } => (format!("groups/{group}"), rel.as_str(), principal, true),
        Step::RemoveGroupLink {
            group,
            rel,
            principal,
        } => (format!("groups/{group}"), rel.as_str(), principal, false),
        Step::AddAppOwner { app, principal } => (
            format!("servicePrincipals/{app}"),
            "owners",
            principal,
            true,
        ),
        Step::RemoveAppOwner { app, principal } => (
            format!("servicePrincipals/{app}"),
            "owners",
            principal,
            false,
        ),
        Step::AssignAppRole {
            app,
            app_role,
            principal,
            ..
        } => {
            return Ok(find_assignment(graph, app, app_role, principal)
                .await?
                .is_some());
        }
        Step::RemoveAppRole {
            app,
            app_role,
            principal,
        } => {
            return Ok(find_assignment(graph, app, app_role, principal)
                .await?
                .is_none());
        }
        Step::AssignLicense { user, sku } => {
            return Ok(license_state(graph, user, sku).await?.direct);
        }
        Step::AssignRole {
            role,
            principal,
            eligible,
            ..
        } => {
            return Ok(find_role_grant(graph, role, principal, eligible)
                .await?
                .is_some());
        }
        Step::RemoveRole {
            role,
            principal,
            eligible,
            ..
        } => {
            return Ok(find_role_grant(graph, role, principal, eligible)
                .await?
                .is_none());
        }
        Step::RemoveLicense { user, sku } => {
            return Ok(!license_state(graph, user, sku).await?.direct);
        }
    };
    // beta: v1.0 leaves service principals out of members and owners.
    let q = Query::beta(format!("{parent}/{rel}"))
        .select(&["id"])
        .filter(format!("id eq {}", odata_string(&principal.to_string())))
        .advanced();
    let page: Value = graph.get(&q).await?;
    let present = page
        .get("value")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items.iter().any(|i| {
                i.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|id| id.eq_ignore_ascii_case(&principal.to_string()))
            })
        });
    Ok(present == want_present)
}

/// Reads the step back until it is in effect or `policy.timeout` passes. Transient read errors
/// count as "not yet"; a permanent one ends the wait with its reason.
pub async fn verify(graph: &GraphClient, step: &Step, policy: VerifyPolicy) -> Verification {
    let start = Instant::now();
    let mut delay = policy.first_delay;
    let mut reads = 0u32;
    loop {
        reads += 1;
        let last_error = match in_effect(graph, step).await {
            Ok(true) => return Verification::Verified { reads },
            Ok(false) => None,
            Err(e) if e.is_transient() => Some(e.to_string()),
            Err(e) => {
                return Verification::Failed {
                    why: format!("reading the change back failed: {e}"),
                    reads,
                };
            }
        };
        if start.elapsed() + delay > policy.timeout {
            let seen = if step.is_grant() {
                "the new grant did not appear in Microsoft Graph"
            } else {
                "the revoked grant was still in Microsoft Graph"
            };
            let why = match last_error {
                Some(e) => format!(
                    "{seen} within {} s ({reads} reads; last read failed: {e})",
                    policy.timeout.as_secs()
                ),
                None => format!(
                    "{seen} within {} s ({reads} reads): Graph accepted the change but it did not take effect; check the object in Entra",
                    policy.timeout.as_secs()
                ),
            };
            return Verification::Failed { why, reads };
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(policy.max_delay);
    }
}
