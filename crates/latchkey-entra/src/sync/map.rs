//! From Graph objects to the access model's rows: which resource type an object is, what a
//! reviewer needs in its profile, which entitlements it offers and which grants it implies.

use latchkey_store::resources::{EntitlementRow, GrantRow, ResourceRow};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Microsoft's own tenant: service principals it owns are first-party apps.
pub const MICROSOFT_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
/// Graph's "default access" app role.
pub const DEFAULT_ACCESS: &str = "00000000-0000-0000-0000-000000000000";

pub const USER_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "accountEnabled",
    "userType",
    "department",
    "jobTitle",
    "employeeId",
    "createdDateTime",
    "onPremisesSyncEnabled",
    "licenseAssignmentStates",
    // A navigation property: delta answers it as `manager@delta`.
    "manager",
];

pub const GROUP_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "description",
    "groupTypes",
    "mailEnabled",
    "securityEnabled",
    "mail",
    "onPremisesSyncEnabled",
    "isAssignableToRole",
    "membershipRule",
    "createdDateTime",
];

pub const SP_FIELDS: &[&str] = &[
    "id",
    "appId",
    "displayName",
    "servicePrincipalType",
    "appOwnerOrganizationId",
    "appRoles",
    "accountEnabled",
    "alternativeNames",
    "preferredSingleSignOnMode",
    "homepage",
    "tags",
];

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

fn b(v: &Value, k: &str) -> Option<bool> {
    v.get(k).and_then(Value::as_bool)
}

pub fn id_of(v: &Value) -> Option<&str> {
    s(v, "id")
}

/// What a users/delta item says about the user's manager: `Some(Some(id))` a manager (the
/// Entra object id), `Some(None)` none (removed), `None` nothing (`manager@delta` absent: in an
/// incremental round, unchanged).
pub fn manager_of(v: &Value) -> Option<Option<String>> {
    if let Some(list) = v.get("manager@delta").and_then(Value::as_array) {
        return Some(
            list.iter()
                .rev()
                .find(|m| m.get("@removed").is_none())
                .and_then(id_of)
                .map(str::to_string),
        );
    }
    // A plain read (`$expand=manager`) answers the object, or null.
    v.get("manager")
        .map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
}

/// A user. Sign-in activity is merged separately. `profile.manager_id` is the manager's object
/// id or null; left out when the item does not say (see [`manager_of`]).
pub fn user(v: &Value) -> Option<ResourceRow> {
    let id = id_of(v)?;
    let mut row = user_fields(v, id);
    if let (Some(m), Some(p)) = (manager_of(v), row.profile.as_object_mut()) {
        p.insert("manager_id".into(), m.map_or(Value::Null, Value::String));
    }
    Some(row)
}

fn user_fields(v: &Value, id: &str) -> ResourceRow {
    ResourceRow {
        rtype: "user",
        key: id.to_string(),
        external_id: id.to_string(),
        display_name: s(v, "displayName")
            .or(s(v, "userPrincipalName"))
            .unwrap_or(id)
            .to_string(),
        profile: json!({
            "user_principal_name": s(v, "userPrincipalName"),
            "mail": s(v, "mail"),
            "account_enabled": b(v, "accountEnabled"),
            "user_type": s(v, "userType"),
            "department": s(v, "department"),
            "job_title": s(v, "jobTitle"),
            "employee_id": s(v, "employeeId"),
            "created": s(v, "createdDateTime"),
            "on_premises_sync_enabled": b(v, "onPremisesSyncEnabled").unwrap_or(false),
        }),
    }
}

pub fn user_on_premises(v: &Value) -> bool {
    b(v, "onPremisesSyncEnabled").unwrap_or(false)
}

/// Licence grants of a user, direct or inherited from a group (`source` = `group:<id>`).
pub fn user_licenses(v: &Value) -> Vec<GrantRow> {
    let Some(user) = id_of(v) else {
        return Vec::new();
    };
    v.get("licenseAssignmentStates")
        .and_then(Value::as_array)
        .map(|states| {
            states
                .iter()
                .filter_map(|st| {
                    let sku = s(st, "skuId")?;
                    Some(GrantRow {
                        resource_key: license_key(sku),
                        slug: "assigned".into(),
                        principal_key: user.to_string(),
                        kind: "license_assigned",
                        source: match s(st, "assignedByGroup") {
                            Some(g) => format!("group:{g}"),
                            None => "direct".into(),
                        },
                        external_id: String::new(),
                        details: Some(json!({"state": s(st, "state")})),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn license_key(sku: &str) -> String {
    format!("license:{sku}")
}

pub fn role_key(id: &str) -> String {
    format!("role:{id}")
}

/// The kind of a group, as reviewers and provisioning tell them apart.
pub fn group_kind(v: &Value) -> &'static str {
    let unified = v
        .get("groupTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("Unified")));
    let mail = b(v, "mailEnabled").unwrap_or(false);
    let sec = b(v, "securityEnabled").unwrap_or(false);
    if unified {
        "microsoft_365"
    } else if mail && sec {
        "mail_enabled_security"
    } else if sec {
        "security"
    } else {
        "distribution"
    }
}

pub fn group_on_premises(v: &Value) -> bool {
    b(v, "onPremisesSyncEnabled").unwrap_or(false)
}

pub fn group(v: &Value) -> Option<(ResourceRow, Vec<EntitlementRow>)> {
    let id = id_of(v)?;
    let name = s(v, "displayName").unwrap_or(id).to_string();
    let dynamic = v
        .get("groupTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| t.iter().any(|x| x.as_str() == Some("DynamicMembership")));
    let ents = vec![
        EntitlementRow {
            resource_key: id.to_string(),
            slug: "members".into(),
            display_name: format!("{name} member"),
        },
        EntitlementRow {
            resource_key: id.to_string(),
            slug: "owners".into(),
            display_name: format!("{name} owner"),
        },
    ];
    Some((
        ResourceRow {
            rtype: "group",
            key: id.to_string(),
            external_id: id.to_string(),
            display_name: name,
            profile: json!({
                "group_type": group_kind(v),
                "membership_type": if dynamic { "dynamic" } else { "assigned" },
                "mail": s(v, "mail"),
                "description": s(v, "description"),
                "on_premises_sync_enabled": group_on_premises(v),
                "is_assignable_to_role": b(v, "isAssignableToRole").unwrap_or(false),
                "created": s(v, "createdDateTime"),
            }),
        },
        ents,
    ))
}

/// A member or owner reference (`@odata.type` + `id`): the principal key, or `None` for
/// objects that are not principals here (devices, contacts).
pub fn principal_of(v: &Value) -> Option<&str> {
    match s(v, "@odata.type") {
        Some("#microsoft.graph.user")
        | Some("#microsoft.graph.group")
        | Some("#microsoft.graph.servicePrincipal")
        | None => id_of(v),
        Some(_) => None,
    }
}

/// A `groups/delta` item as the full sync's membership read needs it: whether it is there,
/// whether it comes from on-premises AD, and who is in it. Read straight from the page's JSON
/// text: a page of 999 groups carries up to a million member references, which as
/// `serde_json::Value`s would take hundreds of MB.
#[derive(Debug, Deserialize)]
pub struct GroupMembers {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "@removed", default, deserialize_with = "present")]
    removed: bool,
    #[serde(rename = "onPremisesSyncEnabled", default)]
    on_premises: Option<Value>,
    #[serde(rename = "members@delta", default)]
    members: Vec<MemberRef>,
}

#[derive(Debug, Deserialize)]
struct MemberRef {
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "@removed", default, deserialize_with = "present")]
    removed: bool,
}

/// A field that counts by being there, whatever it holds (`@removed`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

impl GroupMembers {
    /// The group's object id, unless the item says the group was removed or it comes from
    /// on-premises AD while those are skipped.
    pub fn current_id(&self, skip_on_premises: bool) -> Option<&str> {
        let on_premises = self
            .on_premises
            .as_ref()
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if self.removed || (skip_on_premises && on_premises) {
            return None;
        }
        self.id.as_deref()
    }

    /// Members added (in a full read: every member) that are principals here (users, groups,
    /// service principals; not devices or contacts), as [`principal_of`] reads them.
    pub fn added(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter_map(|m| {
            let principal = matches!(
                m.odata_type.as_deref(),
                None | Some(
                    "#microsoft.graph.user"
                        | "#microsoft.graph.group"
                        | "#microsoft.graph.servicePrincipal"
                )
            );
            (principal && !m.removed)
                .then_some(m.id.as_deref())
                .flatten()
        })
    }
}

pub fn link_grant(group_or_app: &str, slug: &str, kind: &'static str, principal: &str) -> GrantRow {
    GrantRow {
        resource_key: group_or_app.to_string(),
        slug: slug.to_string(),
        principal_key: principal.to_string(),
        kind,
        source: "direct".into(),
        external_id: String::new(),
        details: None,
    }
}

/// A service principal: an enterprise application (with its entitlements) or a managed
/// identity; other types (Legacy, SocialIdp) are not synced.
pub fn service_principal(v: &Value) -> Option<(ResourceRow, Vec<EntitlementRow>)> {
    let id = id_of(v)?;
    let name = s(v, "displayName").unwrap_or(id).to_string();
    match s(v, "servicePrincipalType") {
        Some("Application") => {
            let owner_org = s(v, "appOwnerOrganizationId");
            let mut ents = vec![
                EntitlementRow {
                    resource_key: id.to_string(),
                    slug: "owners".into(),
                    display_name: format!("{name} owner"),
                },
                EntitlementRow {
                    resource_key: id.to_string(),
                    slug: format!("assignment:{DEFAULT_ACCESS}"),
                    display_name: format!("{name}: default access"),
                },
            ];
            for role in v
                .get("appRoles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(rid) = s(role, "id") {
                    ents.push(EntitlementRow {
                        resource_key: id.to_string(),
                        slug: format!("assignment:{rid}"),
                        display_name: format!(
                            "{name}: {}",
                            s(role, "displayName").or(s(role, "value")).unwrap_or(rid)
                        ),
                    });
                }
            }
            Some((
                ResourceRow {
                    rtype: "enterprise_application",
                    key: id.to_string(),
                    external_id: id.to_string(),
                    display_name: name,
                    profile: json!({
                        "app_id": s(v, "appId"),
                        "app_owner_organization_id": owner_org,
                        "first_party": owner_org == Some(MICROSOFT_TENANT),
                        "account_enabled": b(v, "accountEnabled"),
                        "sso_mode": s(v, "preferredSingleSignOnMode"),
                        "homepage": s(v, "homepage"),
                        "tags": v.get("tags").cloned().unwrap_or(Value::Null),
                    }),
                },
                ents,
            ))
        }
        Some("ManagedIdentity") => {
            let user_assigned = v
                .get("alternativeNames")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some("isExplicit=True")));
            Some((
                ResourceRow {
                    rtype: "managed_identity",
                    key: id.to_string(),
                    external_id: id.to_string(),
                    display_name: name,
                    profile: json!({
                        "app_id": s(v, "appId"),
                        "account_enabled": b(v, "accountEnabled"),
                        "assignment": if user_assigned { "user_assigned" } else { "system_assigned" },
                    }),
                },
                Vec::new(),
            ))
        }
        _ => None,
    }
}

/// The app role ids an enterprise application declares (default access included).
pub fn app_role_ids(v: &Value) -> Vec<String> {
    let mut out = vec![DEFAULT_ACCESS.to_string()];
    for role in v
        .get("appRoles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(rid) = s(role, "id") {
            out.push(rid.to_string());
        }
    }
    out
}

/// An `appRoleAssignedTo` item.
pub fn app_role_assignment(app: &str, v: &Value) -> Option<GrantRow> {
    let role = s(v, "appRoleId").unwrap_or(DEFAULT_ACCESS);
    Some(GrantRow {
        resource_key: app.to_string(),
        slug: format!("assignment:{role}"),
        principal_key: s(v, "principalId")?.to_string(),
        kind: "app_role_assignments",
        source: "direct".into(),
        external_id: id_of(v)?.to_string(),
        details: Some(json!({
            "principal_type": s(v, "principalType"),
            "created": s(v, "createdDateTime"),
        })),
    })
}

pub fn role_definition(v: &Value) -> Option<(ResourceRow, Vec<EntitlementRow>)> {
    let id = id_of(v)?;
    let name = s(v, "displayName").unwrap_or(id).to_string();
    let key = role_key(id);
    Some((
        ResourceRow {
            rtype: "role",
            key: key.clone(),
            external_id: id.to_string(),
            display_name: name.clone(),
            profile: json!({
                "description": s(v, "description"),
                "template_id": s(v, "templateId"),
                "is_built_in": b(v, "isBuiltIn"),
                "is_privileged": b(v, "isPrivileged"),
            }),
        },
        vec![
            EntitlementRow {
                resource_key: key.clone(),
                slug: "assigned".into(),
                display_name: format!("{name} (active)"),
            },
            EntitlementRow {
                resource_key: key,
                slug: "eligible".into(),
                display_name: format!("{name} (eligible)"),
            },
        ],
    ))
}

/// A `roleAssignments` item (active) or a `roleEligibilitySchedules` item (eligible).
pub fn role_grant(v: &Value, eligible: bool) -> Option<GrantRow> {
    let role = s(v, "roleDefinitionId")?;
    let schedule = v.get("scheduleInfo");
    Some(GrantRow {
        resource_key: role_key(role),
        slug: if eligible { "eligible" } else { "assigned" }.into(),
        principal_key: s(v, "principalId")?.to_string(),
        kind: if eligible {
            "role_eligible"
        } else {
            "role_assigned"
        },
        source: "direct".into(),
        external_id: id_of(v)?.to_string(),
        details: Some(json!({
            "directory_scope_id": s(v, "directoryScopeId"),
            "start": schedule.and_then(|x| x.get("startDateTime")).cloned(),
            "end": schedule.and_then(|x| x.get("expiration")).and_then(|x| x.get("endDateTime")).cloned(),
        })),
    })
}

/// Gives active role grants (from `roleAssignments`) the start, end and assignment type
/// (`Assigned`, or `Activated` from an eligibility) of their tenant-wide schedule instance.
pub fn apply_assignment_schedules(grants: &mut [GrantRow], instances: &[Value]) {
    let mut by_holder: std::collections::HashMap<(String, String), &Value> =
        std::collections::HashMap::new();
    for i in instances {
        let tenant_wide = s(i, "directoryScopeId").is_none_or(|d| d == "/");
        if let (Some(p), Some(r), true) =
            (s(i, "principalId"), s(i, "roleDefinitionId"), tenant_wide)
        {
            by_holder.insert((p.to_lowercase(), role_key(r)), i);
        }
    }
    for g in grants.iter_mut().filter(|g| g.kind == "role_assigned") {
        let Some(i) = by_holder.get(&(g.principal_key.to_lowercase(), g.resource_key.clone()))
        else {
            continue;
        };
        if let Some(Value::Object(d)) = g.details.as_mut() {
            d.insert(
                "start".into(),
                i.get("startDateTime").cloned().unwrap_or(Value::Null),
            );
            d.insert(
                "end".into(),
                i.get("endDateTime").cloned().unwrap_or(Value::Null),
            );
            d.insert(
                "assignment_type".into(),
                i.get("assignmentType").cloned().unwrap_or(Value::Null),
            );
        }
    }
}

pub fn sku(v: &Value) -> Option<(ResourceRow, EntitlementRow)> {
    let sku = s(v, "skuId")?;
    let name = s(v, "skuPartNumber").unwrap_or(sku).to_string();
    let key = license_key(sku);
    Some((
        ResourceRow {
            rtype: "license",
            key: key.clone(),
            external_id: sku.to_string(),
            display_name: name.clone(),
            profile: json!({
                "sku_part_number": s(v, "skuPartNumber"),
                "capability_status": s(v, "capabilityStatus"),
                "applies_to": s(v, "appliesTo"),
                "seats_purchased": v.get("prepaidUnits").and_then(|p| p.get("enabled")).cloned(),
                "seats_consumed": v.get("consumedUnits").cloned(),
            }),
        },
        EntitlementRow {
            resource_key: key,
            slug: "assigned".into(),
            display_name: format!("{name} licence"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the typed read keeps equals what the JSON-value reading of the same item keeps.
    #[test]
    fn group_members_read_as_the_value_reading_does() {
        let item = json!({
            "id": "g1",
            "displayName": "Sales",
            "onPremisesSyncEnabled": true,
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.group", "id": "g2"},
                {"@odata.type": "#microsoft.graph.servicePrincipal", "id": "s1"},
                {"@odata.type": "#microsoft.graph.device", "id": "d1"},
                {"@odata.type": "#microsoft.graph.orgContact", "id": "c1"},
                {"id": "u2"},
                {"@odata.type": "#microsoft.graph.user", "id": "u3", "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.user"}
            ]
        });
        let by_value: Vec<&str> = item["members@delta"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m.get("@removed").is_none())
            .filter_map(principal_of)
            .collect();
        let typed: GroupMembers = serde_json::from_value(item.clone()).unwrap();
        assert_eq!(typed.added().collect::<Vec<_>>(), by_value);
        assert_eq!(by_value, ["u1", "g2", "s1", "u2"]);
        assert_eq!(typed.current_id(false), Some("g1"));
        assert_eq!(typed.current_id(true), None, "on-premises, skipped");

        let removed: GroupMembers =
            serde_json::from_value(json!({"id": "g1", "@removed": {"reason": "changed"}})).unwrap();
        assert_eq!(removed.current_id(false), None);
        let cloud: GroupMembers =
            serde_json::from_value(json!({"id": "g3", "onPremisesSyncEnabled": null})).unwrap();
        assert_eq!(cloud.current_id(true), Some("g3"));
        assert_eq!(cloud.added().count(), 0);
    }
}
