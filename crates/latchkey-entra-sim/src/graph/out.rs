//! Serialization of directory objects with `$select`, and their `$filter` views.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::{GReq, GraphError, Ver};
use crate::json;
use crate::model::{Directory, Group, ObjKind, ObjRef, ServicePrincipal, SpType, User};
use crate::odata::{FilterRules, Filterable, PV, parse_select};

pub(crate) const USER_PROPS: &[&str] = &[
    "id",
    "accountEnabled",
    "assignedLicenses",
    "businessPhones",
    "companyName",
    "createdDateTime",
    "creationType",
    "department",
    "displayName",
    "employeeId",
    "externalUserState",
    "givenName",
    "jobTitle",
    "licenseAssignmentStates",
    "mail",
    "mailNickname",
    "mobilePhone",
    "officeLocation",
    "onPremisesImmutableId",
    "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "preferredLanguage",
    "signInActivity",
    "signInSessionsValidFromDateTime",
    "surname",
    "usageLocation",
    "userPrincipalName",
    "userType",
    "deletedDateTime",
    "otherMails",
    "proxyAddresses",
    "employeeType",
    "employeeHireDate",
    "city",
    "country",
    "state",
    "streetAddress",
    "postalCode",
    "faxNumber",
    "ageGroup",
    "imAddresses",
    "identities",
    "lastPasswordChangeDateTime",
    "passwordPolicies",
    "securityIdentifier",
    "onPremisesDistinguishedName",
    "onPremisesDomainName",
    "onPremisesUserPrincipalName",
    "onPremisesExtensionAttributes",
    "showInAddressList",
    "isResourceAccount",
];
pub(crate) const U_SIGNIN: usize = 24;

fn mask_of(props: &[&str], names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| props.iter().position(|p| p == n).expect("known prop"))
        .fold(0, |m, i| m | (1 << i))
}

/// v1.0's documented default user properties.
pub(crate) fn user_default(ver: Ver) -> u64 {
    match ver {
        Ver::V1 => mask_of(
            USER_PROPS,
            &[
                "id",
                "businessPhones",
                "displayName",
                "givenName",
                "jobTitle",
                "mail",
                "mobilePhone",
                "officeLocation",
                "preferredLanguage",
                "surname",
                "userPrincipalName",
            ],
        ),
        // beta returns (almost) everything, but never signInActivity unless selected.
        Ver::Beta => ((1u64 << USER_PROPS.len()) - 1) & !(1 << U_SIGNIN),
    }
}

pub(crate) const GROUP_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "classification",
    "createdDateTime",
    "description",
    "displayName",
    "groupTypes",
    "isAssignableToRole",
    "mail",
    "mailEnabled",
    "mailNickname",
    "membershipRule",
    "membershipRuleProcessingState",
    "onPremisesLastSyncDateTime",
    "onPremisesSecurityIdentifier",
    "onPremisesSyncEnabled",
    "proxyAddresses",
    "securityEnabled",
    "securityIdentifier",
    "visibility",
    "assignedLicenses",
    "isManagementRestricted",
    "expirationDateTime",
    "renewedDateTime",
    "onPremisesDomainName",
    "onPremisesNetBiosName",
    "onPremisesSamAccountName",
    "preferredDataLocation",
    "preferredLanguage",
    "theme",
    "resourceBehaviorOptions",
    "resourceProvisioningOptions",
    "creationOptions",
];

pub(crate) fn group_default(_ver: Ver) -> u64 {
    let all = (1u64 << GROUP_PROPS.len()) - 1;
    all & !mask_of(GROUP_PROPS, &["assignedLicenses"])
}

fn bs(s: &Option<Box<str>>) -> Option<&str> {
    s.as_deref()
}

pub(crate) fn write_user(out: &mut Vec<u8>, d: &Directory, ui: usize, mask: u64, with_type: bool) {
    let u = &d.users[ui];
    out.push(b'{');
    let mut first = true;
    if with_type {
        json::key(out, &mut first, "@odata.type");
        out.extend_from_slice(b"\"#microsoft.graph.user\"");
    }
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        json::key(out, &mut first, USER_PROPS[i]);
        match i {
            0 => json::uuid(out, &u.id),
            1 => json::bool(out, u.account_enabled),
            2 => {
                out.push(b'[');
                let mut seen = [u16::MAX; 16];
                let mut n = 0;
                d.for_each_license(ui, |s, _| {
                    if seen[..n].contains(&s) || n == seen.len() {
                        return;
                    }
                    seen[n] = s;
                    if n > 0 {
                        out.push(b',');
                    }
                    n += 1;
                    out.extend_from_slice(b"{\"disabledPlans\":[],\"skuId\":");
                    json::uuid(out, &d.skus[s as usize].sku_id);
                    out.push(b'}');
                });
                out.push(b']');
            }
            3 => {
                out.push(b'[');
                if let Some(p) = &u.business_phone {
                    json::str(out, p);
                }
                out.push(b']');
            }
            4 => json::opt_str(out, u.company_name),
            5 => json::ts(out, u.created),
            6 => json::opt_str(out, u.guest.then_some("Invitation")),
            7 => json::opt_str(out, bs(&u.department)),
            8 => json::str(out, &u.display_name),
            9 => json::opt_str(out, bs(&u.employee_id)),
            10 => json::opt_str(out, u.guest.then_some("Accepted")),
            11 => json::opt_str(out, bs(&u.given_name)),
            12 => json::opt_str(out, bs(&u.job_title)),
            13 => {
                out.push(b'[');
                let mut k = 0;
                d.for_each_license(ui, |s, g| {
                    if k > 0 {
                        out.push(b',');
                    }
                    k += 1;
                    out.extend_from_slice(b"{\"assignedByGroup\":");
                    match g {
                        Some(g) => json::uuid(out, &d.groups[g as usize].id),
                        None => out.extend_from_slice(b"null"),
                    }
                    out.extend_from_slice(b",\"disabledPlans\":[],\"error\":\"None\",\"skuId\":");
                    json::uuid(out, &d.skus[s as usize].sku_id);
                    out.extend_from_slice(b",\"state\":\"Active\"}");
                });
                out.push(b']');
            }
            14 => json::opt_str(out, bs(&u.mail)),
            15 => json::str(out, &u.mail_nickname),
            16 => json::opt_str(out, bs(&u.mobile_phone)),
            17 => json::opt_str(out, bs(&u.office_location)),
            18 => json::opt_str(out, u.on_prem.as_ref().map(|o| &*o.immutable_id)),
            19 => json::opt_ts(out, u.on_prem.as_ref().map(|o| o.last_sync)),
            20 => json::opt_str(out, u.on_prem.as_ref().map(|o| &*o.sam_account_name)),
            21 => json::opt_str(out, u.on_prem.as_ref().map(|o| &*o.sid)),
            22 => json::opt_bool(out, u.on_prem.as_ref().map(|_| true)),
            23 => json::opt_str(out, u.preferred_language),
            24 => match &u.sign_in {
                None => out.extend_from_slice(b"null"),
                Some(s) => {
                    out.extend_from_slice(b"{\"lastSignInDateTime\":");
                    json::ts(out, s.last);
                    out.extend_from_slice(b",\"lastSignInRequestId\":");
                    json::uuid(out, &derived_id(&u.id, 1));
                    out.extend_from_slice(b",\"lastNonInteractiveSignInDateTime\":");
                    json::ts(out, s.last_non_interactive);
                    out.extend_from_slice(b",\"lastNonInteractiveSignInRequestId\":");
                    json::uuid(out, &derived_id(&u.id, 2));
                    out.extend_from_slice(b",\"lastSuccessfulSignInDateTime\":");
                    json::ts(out, s.last_successful);
                    out.extend_from_slice(b",\"lastSuccessfulSignInRequestId\":");
                    json::uuid(out, &derived_id(&u.id, 1));
                    out.push(b'}');
                }
            },
            25 => json::ts(out, u.sessions_valid_from),
            26 => json::opt_str(out, bs(&u.surname)),
            27 => json::opt_str(out, u.usage_location),
            28 => json::str(out, &u.upn),
            29 => out.extend_from_slice(if u.guest { b"\"Guest\"" } else { b"\"Member\"" }),
            30 => json::opt_ts(out, u.deleted),
            31 => out.extend_from_slice(b"[]"),
            32 => {
                out.push(b'[');
                if let Some(m) = &u.mail {
                    out.extend_from_slice(b"\"SMTP:");
                    let start = out.len();
                    json::str(out, m);
                    // Drop the opening quote of the inner literal: "SMTP:" + escaped address + '"'.
                    out.remove(start);
                }
                out.push(b']');
            }
            33 => json::opt_str(out, (!u.guest).then_some("Employee")),
            34 => json::opt_ts(out, (!u.guest).then_some(u.created)),
            35 => json::opt_str(out, bs(&u.office_location).filter(|o| *o != "Remote")),
            36 => json::opt_str(out, u.usage_location),
            37..=41 => out.extend_from_slice(b"null"),
            42 => out.extend_from_slice(b"[]"),
            43 => {
                out.extend_from_slice(b"[{\"signInType\":\"userPrincipalName\",\"issuer\":");
                json::str(out, &d.initial_domain);
                out.extend_from_slice(b",\"issuerAssignedId\":");
                json::str(out, &u.upn);
                out.extend_from_slice(b"}]");
            }
            44 => json::ts(out, u.created),
            45 => out.extend_from_slice(b"\"None\""),
            46 => {
                let v = u.id.as_u128();
                let sid = format!(
                    "S-1-12-1-{}-{}-{}-{}",
                    (v >> 96) as u32,
                    (v >> 64) as u32,
                    (v >> 32) as u32,
                    v as u32
                );
                json::str(out, &sid);
            }
            47 => match &u.on_prem {
                Some(o) => json::str(
                    out,
                    &format!("CN={},OU=Users,DC=contoso,DC=local", o.sam_account_name),
                ),
                None => out.extend_from_slice(b"null"),
            },
            48 => json::opt_str(out, u.on_prem.as_ref().map(|_| "contoso.local")),
            49 => json::opt_str(out, u.on_prem.as_ref().map(|_| &*u.upn)),
            50 => out.extend_from_slice(EXTENSION_ATTRIBUTES),
            51 => out.extend_from_slice(b"null"),
            52 => json::bool(out, false),
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

const EXTENSION_ATTRIBUTES: &[u8] = b"{\"extensionAttribute1\":null,\"extensionAttribute2\":null,\"extensionAttribute3\":null,\"extensionAttribute4\":null,\"extensionAttribute5\":null,\"extensionAttribute6\":null,\"extensionAttribute7\":null,\"extensionAttribute8\":null,\"extensionAttribute9\":null,\"extensionAttribute10\":null,\"extensionAttribute11\":null,\"extensionAttribute12\":null,\"extensionAttribute13\":null,\"extensionAttribute14\":null,\"extensionAttribute15\":null}";

fn derived_id(id: &uuid::Uuid, k: u64) -> uuid::Uuid {
    let v = id.as_u128() ^ (crate::rng::mix(k) as u128) << 64 ^ crate::rng::mix(k + 7) as u128;
    uuid::Builder::from_random_bytes(v.to_be_bytes()).into_uuid()
}

pub(crate) fn write_group(out: &mut Vec<u8>, d: &Directory, gi: usize, mask: u64, with_type: bool) {
    let g = &d.groups[gi];
    out.push(b'{');
    let mut first = true;
    if with_type {
        json::key(out, &mut first, "@odata.type");
        out.extend_from_slice(b"\"#microsoft.graph.group\"");
    }
    let mut m = mask;
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        json::key(out, &mut first, GROUP_PROPS[i]);
        match i {
            0 => json::uuid(out, &g.id),
            1 => json::opt_ts(out, g.deleted),
            2 => out.extend_from_slice(b"null"),
            3 => json::ts(out, g.created),
            4 => json::opt_str(out, bs(&g.description)),
            5 => json::str(out, &g.display_name),
            6 => {
                out.push(b'[');
                let mut items = Vec::new();
                if g.kind.unified() {
                    items.push("Unified");
                }
                if g.kind.dynamic() {
                    items.push("DynamicMembership");
                }
                for (k, t) in items.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    json::str(out, t);
                }
                out.push(b']');
            }
            7 => json::bool(out, g.kind == crate::model::GroupKind::RoleAssignable),
            8 => json::opt_str(out, g.mail(&d.domain).as_deref()),
            9 => json::bool(out, g.kind.mail_enabled()),
            10 => json::str(out, &g.mail_nickname),
            11 => json::opt_str(out, bs(&g.membership_rule)),
            12 => json::opt_str(out, g.kind.dynamic().then_some("On")),
            13 => json::opt_ts(out, g.on_prem().then_some(g.created)),
            14 => json::opt_str(out, bs(&g.on_prem_sid)),
            15 => json::opt_bool(out, g.on_prem().then_some(true)),
            16 => {
                out.push(b'[');
                if let Some(m) = g.mail(&d.domain) {
                    json::str(out, &format!("SMTP:{m}"));
                }
                out.push(b']');
            }
            17 => json::bool(out, g.kind.security_enabled()),
            18 => json::str(out, &g.security_identifier),
            19 => json::opt_str(out, g.visibility),
            20 => {
                out.push(b'[');
                for (k, s) in g.licenses.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"disabledPlans\":[],\"skuId\":");
                    json::uuid(out, &d.skus[*s as usize].sku_id);
                    out.push(b'}');
                }
                out.push(b']');
            }
            21 => json::bool(out, false),
            22 | 27 | 28 | 29 => out.extend_from_slice(b"null"),
            23 => json::ts(out, g.created),
            24 => json::opt_str(out, g.on_prem().then_some("contoso.local")),
            25 => json::opt_str(out, g.on_prem().then_some("CONTOSO")),
            26 => json::opt_str(out, g.on_prem().then_some(&*g.mail_nickname)),
            30..=32 => out.extend_from_slice(b"[]"),
            _ => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// Service principals are few; a JSON value is simple and fast enough.
pub(crate) fn sp_value(d: &Directory, s: &ServicePrincipal) -> Map<String, Value> {
    let roles: Vec<Value> = s
        .app_roles
        .iter()
        .map(|a| {
            json!({
                "allowedMemberTypes": a.allowed_member_types, "description": a.description, "displayName": a.display_name,
                "id": a.id, "isEnabled": true, "origin": "Application", "value": a.value
            })
        })
        .collect();
    let v = json!({
        "id": s.id,
        "deletedDateTime": null,
        "accountEnabled": s.account_enabled,
        "alternativeNames": s.alternative_names,
        "appDisplayName": if s.sp_type == SpType::ManagedIdentity { Value::Null } else { json!(s.display_name) },
        "appDescription": null,
        "appId": s.app_id,
        "applicationTemplateId": null,
        "appOwnerOrganizationId": s.owner_org,
        "appRoleAssignmentRequired": s.assignment_required,
        "appRoles": roles,
        "description": s.description,
        "disabledByMicrosoftStatus": null,
        "displayName": s.display_name,
        "homepage": s.homepage,
        "info": {"logoUrl": null, "marketingUrl": null, "privacyStatementUrl": null, "supportUrl": null, "termsOfServiceUrl": null},
        "loginUrl": null,
        "notes": null,
        "preferredSingleSignOnMode": s.sso_mode,
        "servicePrincipalNames": s.names,
        "servicePrincipalType": match s.sp_type { SpType::Application => "Application", SpType::ManagedIdentity => "ManagedIdentity" },
        "signInAudience": if s.sp_type == SpType::ManagedIdentity { Value::Null } else if s.owner_org == Some(d.tenant_id) { json!("AzureADMyOrg") } else { json!("AzureADMultipleOrgs") },
        "tags": s.tags,
        "oauth2PermissionScopes": [],
        "keyCredentials": [],
        "passwordCredentials": [],
        "replyUrls": [],
        "logoutUrl": null,
        "samlSingleSignOnSettings": null,
        "verifiedPublisher": {"displayName": null, "verifiedPublisherId": null, "addedDateTime": null},
        "addIns": [],
        "notificationEmailAddresses": [],
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Which properties of a JSON-built object to keep; `None` keeps everything.
pub(crate) fn filter_map(m: Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    match select {
        None => m,
        Some(names) => m
            .into_iter()
            .filter(|(k, _)| names.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .collect(),
    }
}

pub(crate) fn select_names(r: &GReq) -> Option<Vec<String>> {
    r.param("select").map(|s| {
        s.split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    })
}

pub(crate) const SP_PROPS: &[&str] = &[
    "id",
    "deletedDateTime",
    "accountEnabled",
    "alternativeNames",
    "appDisplayName",
    "appDescription",
    "appId",
    "applicationTemplateId",
    "appOwnerOrganizationId",
    "appRoleAssignmentRequired",
    "appRoles",
    "description",
    "disabledByMicrosoftStatus",
    "displayName",
    "homepage",
    "info",
    "loginUrl",
    "notes",
    "preferredSingleSignOnMode",
    "servicePrincipalNames",
    "servicePrincipalType",
    "signInAudience",
    "tags",
    "oauth2PermissionScopes",
    "keyCredentials",
    "passwordCredentials",
    "replyUrls",
    "logoutUrl",
    "samlSingleSignOnSettings",
    "verifiedPublisher",
    "addIns",
    "notificationEmailAddresses",
];

/// `$select` for a mixed directoryObject collection (members, owners): each type keeps the names it knows.
pub(crate) struct MixedSelect {
    pub user: u64,
    pub group: u64,
    pub sp: Option<Vec<String>>,
}

pub(crate) fn mixed_select(r: &GReq) -> Result<MixedSelect, GraphError> {
    match r.param("select") {
        None => Ok(MixedSelect {
            user: user_default(r.ver),
            group: group_default(r.ver),
            sp: None,
        }),
        Some(raw) => {
            let names: Vec<&str> = raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let mut user = 0u64;
            let mut group = 0u64;
            for n in &names {
                let u = USER_PROPS.iter().position(|p| p.eq_ignore_ascii_case(n));
                let g = GROUP_PROPS.iter().position(|p| p.eq_ignore_ascii_case(n));
                let s = SP_PROPS.iter().any(|p| p.eq_ignore_ascii_case(n));
                if u.is_none() && g.is_none() && !s {
                    return Err(GraphError::bad_request(format!(
                        "Could not find a property named '{n}' on type 'microsoft.graph.directoryObject'."
                    )));
                }
                if let Some(u) = u {
                    user |= 1 << u;
                }
                if let Some(g) = g {
                    group |= 1 << g;
                }
            }
            Ok(MixedSelect {
                user,
                group,
                sp: Some(names.iter().map(|s| s.to_string()).collect()),
            })
        }
    }
}

pub(crate) fn write_member(out: &mut Vec<u8>, d: &Directory, m: ObjRef, sel: &MixedSelect) {
    match m.kind() {
        ObjKind::User => write_user(out, d, m.idx(), sel.user, true),
        ObjKind::Group => write_group(out, d, m.idx(), sel.group, true),
        ObjKind::ServicePrincipal => {
            let mut v = Map::new();
            v.insert(
                "@odata.type".into(),
                json!("#microsoft.graph.servicePrincipal"),
            );
            v.extend(filter_map(sp_value(d, &d.sps[m.idx()]), sel.sp.as_deref()));
            out.extend_from_slice(Value::Object(v).to_string().as_bytes());
        }
    }
}

pub(crate) fn user_select(r: &GReq) -> Result<u64, GraphError> {
    match r.param("select") {
        None => Ok(user_default(r.ver)),
        Some(s) => parse_select(s, USER_PROPS, "user").map_err(GraphError::bad_request),
    }
}

pub(crate) fn group_select(r: &GReq) -> Result<u64, GraphError> {
    match r.param("select") {
        None => Ok(group_default(r.ver)),
        Some(s) => parse_select(s, GROUP_PROPS, "group").map_err(GraphError::bad_request),
    }
}

pub(crate) const USER_RULES: FilterRules = FilterRules {
    resource: "User",
    default: &[
        "id",
        "accountEnabled",
        "userType",
        "displayName",
        "givenName",
        "surname",
        "mail",
        "userPrincipalName",
        "onPremisesSyncEnabled",
        "assignedLicenses",
        "createdDateTime",
        "usageLocation",
        "employeeId",
        "jobTitle",
        "department",
        "mailNickname",
        "proxyAddresses",
        "otherMails",
        "signInActivity",
        "externalUserState",
        "creationType",
        "onPremisesImmutableId",
        "onPremisesSamAccountName",
        "businessPhones",
        "mobilePhone",
    ],
    advanced: &[
        "companyName",
        "officeLocation",
        "preferredLanguage",
        "onPremisesSecurityIdentifier",
        "onPremisesLastSyncDateTime",
        "licenseAssignmentStates",
    ],
};

pub(crate) const GROUP_RULES: FilterRules = FilterRules {
    resource: "Group",
    default: &[
        "id",
        "displayName",
        "mail",
        "mailEnabled",
        "securityEnabled",
        "onPremisesSyncEnabled",
        "isAssignableToRole",
        "groupTypes",
        "mailNickname",
        "securityIdentifier",
        "onPremisesSecurityIdentifier",
        "proxyAddresses",
    ],
    advanced: &[
        "description",
        "createdDateTime",
        "membershipRule",
        "classification",
        "visibility",
        "assignedLicenses",
    ],
};

pub(crate) const SP_RULES: FilterRules = FilterRules {
    resource: "ServicePrincipal",
    default: &[
        "id",
        "servicePrincipalType",
        "appId",
        "displayName",
        "accountEnabled",
        "tags",
        "servicePrincipalNames",
        "appOwnerOrganizationId",
        "preferredSingleSignOnMode",
        "alternativeNames",
    ],
    advanced: &[
        "appDisplayName",
        "description",
        "appRoleAssignmentRequired",
        "signInAudience",
    ],
};

/// Members and owners: `$filter` on navigation collections needs advanced query parameters.
pub(crate) const MEMBER_RULES: FilterRules = FilterRules {
    resource: "DirectoryObject",
    default: &[],
    advanced: &[
        "id",
        "accountEnabled",
        "userType",
        "displayName",
        "mail",
        "userPrincipalName",
        "onPremisesSyncEnabled",
        "servicePrincipalType",
        "securityEnabled",
        "mailEnabled",
        "groupTypes",
        "createdDateTime",
        "jobTitle",
        "department",
    ],
};

pub(crate) struct UserF<'a> {
    pub d: &'a Directory,
    pub ui: usize,
}

fn s<'a>(v: &'a str) -> Option<PV<'a>> {
    Some(PV::S(Cow::Borrowed(v)))
}
fn os<'a>(v: Option<&'a str>) -> Option<PV<'a>> {
    Some(v.map(|v| PV::S(Cow::Borrowed(v))).unwrap_or(PV::Null))
}

impl Filterable for UserF<'_> {
    fn prop(&self, path: &str) -> Option<PV<'_>> {
        let u: &User = &self.d.users[self.ui];
        match path.to_ascii_lowercase().as_str() {
            "id" => Some(PV::S(Cow::Owned(u.id.to_string()))),
            "accountenabled" => Some(PV::B(u.account_enabled)),
            "usertype" => s(if u.guest { "Guest" } else { "Member" }),
            "displayname" => s(&u.display_name),
            "givenname" => os(bs(&u.given_name)),
            "surname" => os(bs(&u.surname)),
            "mail" => os(bs(&u.mail)),
            "userprincipalname" => s(&u.upn),
            "onpremisessyncenabled" => {
                Some(u.on_prem.as_ref().map(|_| PV::B(true)).unwrap_or(PV::Null))
            }
            "createddatetime" => Some(PV::T(u.created)),
            "usagelocation" => os(u.usage_location),
            "employeeid" => os(bs(&u.employee_id)),
            "jobtitle" => os(bs(&u.job_title)),
            "department" => os(bs(&u.department)),
            "mailnickname" => s(&u.mail_nickname),
            "companyname" => os(u.company_name),
            "officelocation" => os(bs(&u.office_location)),
            "preferredlanguage" => os(u.preferred_language),
            "mobilephone" => os(bs(&u.mobile_phone)),
            "externaluserstate" => os(u.guest.then_some("Accepted")),
            "creationtype" => os(u.guest.then_some("Invitation")),
            "onpremisesimmutableid" => os(u.on_prem.as_ref().map(|o| &*o.immutable_id)),
            "onpremisessamaccountname" => os(u.on_prem.as_ref().map(|o| &*o.sam_account_name)),
            "onpremisessecurityidentifier" => os(u.on_prem.as_ref().map(|o| &*o.sid)),
            "signinactivity/lastsignindatetime" => {
                Some(u.sign_in.map(|x| PV::T(x.last)).unwrap_or(PV::Null))
            }
            "signinactivity/lastnoninteractivesignindatetime" => Some(
                u.sign_in
                    .map(|x| PV::T(x.last_non_interactive))
                    .unwrap_or(PV::Null),
            ),
            "signinactivity/lastsuccessfulsignindatetime" => Some(
                u.sign_in
                    .map(|x| PV::T(x.last_successful))
                    .unwrap_or(PV::Null),
            ),
            _ => None,
        }
    }
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
        let u = &self.d.users[self.ui];
        match path.to_ascii_lowercase().as_str() {
            "assignedlicenses" => self
                .d
                .assigned_skus(self.ui)
                .into_iter()
                .map(|k| {
                    vec![(
                        "skuId",
                        PV::S(Cow::Owned(self.d.skus[k as usize].sku_id.to_string())),
                    )]
                })
                .collect(),
            "proxyaddresses" => u
                .mail
                .as_ref()
                .map(|m| vec![vec![("", PV::S(Cow::Owned(format!("SMTP:{m}"))))]])
                .unwrap_or_default(),
            "businessphones" => u
                .business_phone
                .as_ref()
                .map(|p| vec![vec![("", PV::S(Cow::Borrowed(&**p)))]])
                .unwrap_or_default(),
            _ => vec![],
        }
    }
}

pub(crate) struct GroupF<'a> {
    pub d: &'a Directory,
    pub gi: usize,
}

impl Filterable for GroupF<'_> {
    fn prop(&self, path: &str) -> Option<PV<'_>> {
        let g: &Group = &self.d.groups[self.gi];
        match path.to_ascii_lowercase().as_str() {
            "id" => Some(PV::S(Cow::Owned(g.id.to_string()))),
            "displayname" => s(&g.display_name),
            "description" => os(bs(&g.description)),
            "mail" => Some(
                g.mail(&self.d.domain)
                    .map(|m| PV::S(Cow::Owned(m)))
                    .unwrap_or(PV::Null),
            ),
            "mailenabled" => Some(PV::B(g.kind.mail_enabled())),
            "securityenabled" => Some(PV::B(g.kind.security_enabled())),
            "onpremisessyncenabled" => Some(if g.on_prem() { PV::B(true) } else { PV::Null }),
            "isassignabletorole" => Some(PV::B(g.kind == crate::model::GroupKind::RoleAssignable)),
            "mailnickname" => s(&g.mail_nickname),
            "securityidentifier" => s(&g.security_identifier),
            "onpremisessecurityidentifier" => os(bs(&g.on_prem_sid)),
            "createddatetime" => Some(PV::T(g.created)),
            "membershiprule" => os(bs(&g.membership_rule)),
            "visibility" => os(g.visibility),
            "classification" => Some(PV::Null),
            _ => None,
        }
    }
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
        let g = &self.d.groups[self.gi];
        match path.to_ascii_lowercase().as_str() {
            "grouptypes" => {
                let mut v = Vec::new();
                if g.kind.unified() {
                    v.push(vec![("", PV::S(Cow::Borrowed("Unified")))]);
                }
                if g.kind.dynamic() {
                    v.push(vec![("", PV::S(Cow::Borrowed("DynamicMembership")))]);
                }
                v
            }
            "assignedlicenses" => g
                .licenses
                .iter()
                .map(|k| {
                    vec![(
                        "skuId",
                        PV::S(Cow::Owned(self.d.skus[*k as usize].sku_id.to_string())),
                    )]
                })
                .collect(),
            "proxyaddresses" => g
                .mail(&self.d.domain)
                .map(|m| vec![vec![("", PV::S(Cow::Owned(format!("SMTP:{m}"))))]])
                .unwrap_or_default(),
            _ => vec![],
        }
    }
}

/// `$filter` over any JSON object (service principals, assignments, schedules, audit records).
pub(crate) struct JsonF<'a>(pub &'a Value);

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('/') {
        cur = match cur {
            Value::Object(m) => m
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn to_pv(v: &Value) -> PV<'_> {
    match v {
        Value::String(s) => PV::S(Cow::Borrowed(s)),
        Value::Bool(b) => PV::B(*b),
        Value::Null => PV::Null,
        other => PV::S(Cow::Owned(other.to_string())),
    }
}

impl Filterable for JsonF<'_> {
    fn prop(&self, path: &str) -> Option<PV<'_>> {
        self.prop_a(path)
    }
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
        self.items_a(path)
    }
}

impl<'a> JsonF<'a> {
    fn prop_a(&self, path: &str) -> Option<PV<'a>> {
        lookup(self.0, path).map(to_pv)
    }
    fn items_a(&self, path: &str) -> Vec<Vec<(&'static str, PV<'a>)>> {
        match lookup(self.0, path) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|item| match item {
                    Value::Object(m) => m
                        .iter()
                        .filter_map(|(k, v)| {
                            // Sub-paths used in lambdas over objects.
                            let key: &'static str = match k.as_str() {
                                "skuId" => "skuId",
                                "id" => "id",
                                "value" => "value",
                                _ => return None,
                            };
                            Some((key, to_pv(v)))
                        })
                        .collect(),
                    other => vec![("", to_pv(other))],
                })
                .collect(),
            _ => vec![],
        }
    }
}

/// A member of a mixed collection, for `$filter` on members/owners.
pub(crate) struct MemberF<'a> {
    pub d: &'a Directory,
    pub m: ObjRef,
    pub sp: Option<Value>,
}

impl<'a> MemberF<'a> {
    pub(crate) fn new(d: &'a Directory, m: ObjRef) -> Self {
        let sp = (m.kind() == ObjKind::ServicePrincipal)
            .then(|| Value::Object(sp_value(d, &d.sps[m.idx()])));
        MemberF { d, m, sp }
    }
}

impl Filterable for MemberF<'_> {
    fn prop(&self, path: &str) -> Option<PV<'_>> {
        match self.m.kind() {
            ObjKind::User => UserF {
                d: self.d,
                ui: self.m.idx(),
            }
            .prop(path)
            .map(owned),
            ObjKind::Group => GroupF {
                d: self.d,
                gi: self.m.idx(),
            }
            .prop(path)
            .map(owned),
            ObjKind::ServicePrincipal => self.sp.as_ref().and_then(|v| JsonF(v).prop_a(path)),
        }
    }
    fn items(&self, path: &str) -> Vec<Vec<(&'static str, PV<'_>)>> {
        let conv = |v: Vec<Vec<(&'static str, PV<'_>)>>| -> Vec<Vec<(&'static str, PV<'static>)>> {
            v.into_iter()
                .map(|i| i.into_iter().map(|(k, p)| (k, owned(p))).collect())
                .collect()
        };
        match self.m.kind() {
            ObjKind::User => conv(
                UserF {
                    d: self.d,
                    ui: self.m.idx(),
                }
                .items(path),
            ),
            ObjKind::Group => conv(
                GroupF {
                    d: self.d,
                    gi: self.m.idx(),
                }
                .items(path),
            ),
            ObjKind::ServicePrincipal => self
                .sp
                .as_ref()
                .map(|v| JsonF(v).items_a(path))
                .unwrap_or_default(),
        }
    }
}

fn owned(p: PV<'_>) -> PV<'static> {
    match p {
        PV::S(s) => PV::S(Cow::Owned(s.into_owned())),
        PV::B(b) => PV::B(b),
        PV::T(t) => PV::T(t),
        PV::Null => PV::Null,
    }
}
