//! Seeded generation of a whole tenant: users, every group kind, apps, roles, PIM, licences, audit history.

use std::collections::HashMap;

use uuid::Uuid;

use crate::config::{SimConfig, default_permissions};
use crate::model::*;
use crate::rng::Rng;

const FIRST: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Shafi",
    "Leslie",
    "Sophie",
    "Niklaus",
    "Anita",
    "Guido",
    "Karen",
    "Bjarne",
    "Jean",
    "Vint",
    "Lynn",
    "Whitfield",
    "Mary",
    "Yukihiro",
    "Adele",
    "Robin",
    "Ivan",
    "Evelyn",
    "Fernando",
    "Joan",
    "Raj",
    "Amara",
    "Chen",
    "Ingrid",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Lee",
    "Lamarr",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Goldwasser",
    "Lamport",
    "Wilson",
    "Wirth",
    "Borg",
    "Rossum",
    "Jones",
    "Stroustrup",
    "Sammet",
    "Cerf",
    "Conway",
    "Diffie",
    "Kenneth",
    "Matsumoto",
    "Goldberg",
    "Milner",
    "Sutherland",
    "Berezin",
    "Corbato",
    "Clarke",
    "Reddy",
    "Okafor",
    "Wei",
    "Larsen",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Legal",
    "Support",
    "Operations",
    "People",
    "Security",
    "Product",
];
const TITLES: &[&str] = &[
    "Engineer",
    "Senior Engineer",
    "Manager",
    "Director",
    "Analyst",
    "Specialist",
    "Consultant",
    "Administrator",
    "Designer",
    "Architect",
];
const OFFICES: &[&str] = &[
    "Seattle",
    "London",
    "Dublin",
    "Singapore",
    "Berlin",
    "Remote",
];
const COUNTRIES: &[&str] = &["US", "GB", "IE", "SG", "DE", "FR", "NL"];
const APPS: &[&str] = &[
    "Salesforce",
    "ServiceNow",
    "Workday",
    "GitHub Enterprise Cloud",
    "Slack",
    "Zoom",
    "Atlassian Cloud",
    "Dropbox Business",
    "Box",
    "AWS IAM Identity Center",
    "Google Cloud",
    "Tableau",
    "Zendesk",
    "DocuSign",
    "Adobe Creative Cloud",
    "Miro",
    "Figma",
    "Notion",
    "Asana",
    "HubSpot",
    "Snowflake",
    "Datadog",
    "PagerDuty",
    "Coupa",
];
const GROUP_TOPICS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Legal",
    "Support",
    "Operations",
    "People",
    "Security",
    "Product",
    "Platform",
    "Data",
    "Design",
    "Research",
    "Facilities",
    "Executives",
];

/// Built-in role templates: (id, name, description, privileged).
pub(crate) const ROLE_CATALOG: &[(u128, &str, &str, bool)] = &[
    (
        0x62e90394_69f5_4237_9190_012177145e10,
        "Global Administrator",
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
        true,
    ),
    (
        0xfe930be7_5e62_47db_91af_98c3a49a38b1,
        "User Administrator",
        "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
        true,
    ),
    (
        0xfdd7a751_b60b_444a_984c_02652fe8fa1c,
        "Groups Administrator",
        "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports.",
        false,
    ),
    (
        0x9b895d92_2cd3_44c7_9d02_a6ac2d5ea5c3,
        "Application Administrator",
        "Can create and manage all aspects of app registrations and enterprise apps.",
        true,
    ),
    (
        0x158c047a_c907_4556_b7ef_446551a6b5f7,
        "Cloud Application Administrator",
        "Can create and manage all aspects of app registrations and enterprise apps except App Proxy.",
        true,
    ),
    (
        0x729827e3_9c14_49f7_bb1b_9608f156bbb8,
        "Helpdesk Administrator",
        "Can reset passwords for non-administrators and Helpdesk Administrators.",
        true,
    ),
    (
        0x194ae4cb_b126_40b2_bd5b_6091b380977d,
        "Security Administrator",
        "Can read security information and reports, and manage configuration in Microsoft Entra ID and Office 365.",
        true,
    ),
    (
        0x29232cdf_9323_42fd_ade2_1d097af3e4de,
        "Exchange Administrator",
        "Can manage all aspects of the Exchange product.",
        false,
    ),
    (
        0xe8611ab8_c189_46e8_94e1_60213ab1f814,
        "Privileged Role Administrator",
        "Can manage role assignments in Microsoft Entra ID, and all aspects of Privileged Identity Management.",
        true,
    ),
    (
        0xf2ef992c_3afb_46b9_b7cf_a126ee74c451,
        "Global Reader",
        "Can read everything that a Global Administrator can, but not update anything.",
        true,
    ),
    (
        0xb0f54661_2d74_4c50_afa3_1ec803f12efe,
        "Billing Administrator",
        "Can perform common billing related tasks like updating payment information.",
        false,
    ),
    (
        0x4d6ac14f_3453_41d0_bef9_a3e0c569773a,
        "License Administrator",
        "Can manage product licenses on users and groups.",
        false,
    ),
    (
        0x7be44c8a_adaf_4e2a_84d6_ab2649e08a13,
        "Privileged Authentication Administrator",
        "Can access to view, set and reset authentication method information for any user (admin or non-admin).",
        true,
    ),
    (
        0x966707d0_3269_4727_9be2_8c3a10f19b9d,
        "Password Administrator",
        "Can reset passwords for non-administrators and Password Administrators.",
        true,
    ),
];

/// (skuId, part number, service plans)
const SKU_CATALOG: &[(u128, &str, &[&str])] = &[
    (
        0x6fd2c87f_b296_42f0_b197_1e91e994b900,
        "ENTERPRISEPACK",
        &["EXCHANGE_S_ENTERPRISE", "SHAREPOINTENTERPRISE", "TEAMS1"],
    ),
    (
        0x06ebc4ee_1bb5_47dd_8120_11324bc54e06,
        "SPE_E5",
        &["EXCHANGE_S_ENTERPRISE", "AAD_PREMIUM_P2", "TEAMS1"],
    ),
    (
        0x84a661c4_e949_4bd2_a560_ed7766fcaf2b,
        "AAD_PREMIUM_P2",
        &["AAD_PREMIUM", "AAD_PREMIUM_P2"],
    ),
    (
        0x078d2b04_f1bd_4111_bbd4_b4b1b354cef4,
        "AAD_PREMIUM",
        &["AAD_PREMIUM"],
    ),
    (
        0xa403ebcc_fae0_4ca2_8c8c_7a907fd6c235,
        "POWER_BI_STANDARD",
        &["BI_AZURE_P0"],
    ),
    (
        0xf30db892_07e9_47e9_837c_80727f46fd3d,
        "FLOW_FREE",
        &["FLOW_P2_VIRAL"],
    ),
];

/// Microsoft first-party service principals: (appId, name).
const FIRST_PARTY: &[(u128, &str)] = &[
    (0x00000003_0000_0000_c000_000000000000, "Microsoft Graph"),
    (
        0x00000002_0000_0ff1_ce00_000000000000,
        "Office 365 Exchange Online",
    ),
    (
        0x00000003_0000_0ff1_ce00_000000000000,
        "Office 365 SharePoint Online",
    ),
    (
        0xcc15fd57_2c6c_4117_a88c_83b1d56b4bbe,
        "Microsoft Teams Services",
    ),
    (0xc44b4083_3bb0_49c1_b47d_974e53cbdf3c, "Azure Portal"),
];

/// The SKU index in the catalog that is generated with every seat used (for the "no seats left" refusal).
pub(crate) const FULL_SKU: u16 = 4;

/// What generation hands back besides the directory.
pub(crate) struct Generated {
    pub dir: Directory,
    pub customer_client_id: Uuid,
    pub customer_secret: String,
    pub customer_sp: u32,
    pub admin_user: u32,
}

fn name_uuid(label: &str) -> Uuid {
    let mut r = Rng::new(0x5157_0000);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    r = r.fork(h);
    r.uuid()
}

fn bs(s: impl Into<String>) -> Box<str> {
    s.into().into_boxed_str()
}

pub(crate) fn generate(cfg: &SimConfig) -> Generated {
    let root = Rng::new(cfg.seed);
    let mut idr = root.fork(1);
    let tenant_id = cfg.tenant_id.unwrap_or_else(|| idr.uuid());
    let slug: String = cfg
        .org_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let slug = if slug.is_empty() {
        "tenant".to_string()
    } else {
        slug
    };
    let initial_domain = format!("{slug}.onmicrosoft.com");
    let domain = format!("{slug}.com");
    let anchor = crate::json::now() / 86_400 * 86_400;
    let sizes = &cfg.sizes;

    let mut dir = Directory {
        tenant_id,
        org_name: cfg.org_name.clone(),
        initial_domain: initial_domain.clone(),
        domain: domain.clone(),
        created: anchor - 3 * 365 * 86_400,
        users: Vec::with_capacity(sizes.users + 16),
        groups: Vec::with_capacity(sizes.groups + 16),
        sps: Vec::new(),
        ids: HashMap::with_capacity(sizes.users + sizes.groups + sizes.apps + 64),
        upns: HashMap::with_capacity(sizes.users + 16),
        app_ids: HashMap::new(),
        roles: Vec::new(),
        role_assignments: Vec::new(),
        eligibilities: Vec::new(),
        assignment_requests: Vec::new(),
        eligibility_requests: Vec::new(),
        skus: Vec::new(),
        audit: Vec::new(),
        member_log: Vec::new(),
        manager_log: Vec::new(),
        provision_calls: Vec::new(),
        license_groups: Vec::new(),
        seq: 1,
        rng: root.fork(99),
        password_min_length: 8,
        passwords: Default::default(),
    };

    // SKUs.
    let nskus = sizes.skus.clamp(1, SKU_CATALOG.len());
    for &(id, part, plans) in &SKU_CATALOG[..nskus] {
        dir.skus.push(Sku {
            sku_id: Uuid::from_u128(id),
            part_number: part,
            enabled: 0,
            plans: plans.iter().map(|p| (name_uuid(p), *p)).collect(),
        });
    }

    gen_users(&mut dir, cfg, &root, anchor, &domain, &initial_domain);
    let admin_user = 0u32;

    // Service principals: first party, the customer's own app registration, enterprise apps, managed identities.
    let mut sr = root.fork(3);
    let dir_created = dir.created;
    for &(app, name) in FIRST_PARTY {
        let app_id = Uuid::from_u128(app);
        let roles = if name == "Microsoft Graph" {
            default_permissions()
                .iter()
                .map(|p| AppRole {
                    id: name_uuid(p),
                    display_name: p.clone(),
                    value: p.clone(),
                    description: format!("Allows the app to use {p} without a signed-in user."),
                    allowed_member_types: vec!["Application"],
                })
                .collect()
        } else {
            Vec::new()
        };
        push_sp(
            &mut dir,
            ServicePrincipal {
                id: sr.uuid(),
                app_id,
                display_name: name.to_string(),
                sp_type: SpType::Application,
                owner_org: Some(MICROSOFT_TENANT),
                account_enabled: true,
                app_roles: roles,
                tags: vec![],
                names: vec![app_id.to_string()],
                alternative_names: vec![],
                homepage: None,
                description: None,
                assignment_required: false,
                first_party: true,
                sso_mode: None,
                owners: vec![],
                assigned_to: vec![],
                sync_jobs: vec![],
                created: dir_created,
                deleted: None,
            },
        );
    }
    let customer_client_id = sr.uuid();
    let customer_secret = sr.secret();
    let customer_sp = dir.sps.len() as u32;
    push_sp(
        &mut dir,
        ServicePrincipal {
            id: sr.uuid(),
            app_id: customer_client_id,
            display_name: "Latchkey Connector".to_string(),
            sp_type: SpType::Application,
            owner_org: Some(tenant_id),
            account_enabled: true,
            app_roles: vec![],
            tags: vec!["WindowsAzureActiveDirectoryIntegratedApp".to_string()],
            names: vec![customer_client_id.to_string()],
            alternative_names: vec![],
            homepage: None,
            description: Some("App registration used by Latchkey to sync and provision.".into()),
            assignment_required: false,
            first_party: false,
            // An app registration Latchkey uses, not an app people sign in to.
            sso_mode: None,
            owners: vec![ObjRef::user(0)],
            assigned_to: vec![],
            sync_jobs: vec![],
            created: anchor - 30 * 86_400,
            deleted: None,
        },
    );
    let nusers = dir.users.len();
    let third_party_org = sr.uuid();
    for i in 0..sizes.apps {
        let name = if let Some(n) = APPS.get(i) {
            n.to_string()
        } else {
            format!("Line-of-business App {i:04}")
        };
        let app_id = sr.uuid();
        let mut roles = Vec::new();
        if i % 4 != 0 {
            let n = 1 + sr.index(4);
            for (k, (dn, val)) in [
                ("Administrator", "Admin"),
                ("User", "User"),
                ("Read Only", "ReadOnly"),
                ("Approver", "Approver"),
            ]
            .iter()
            .take(n)
            .enumerate()
            {
                roles.push(AppRole {
                    id: sr.uuid(),
                    display_name: format!("{name} {dn}"),
                    value: val.to_string(),
                    description: format!("{dn} access to {name}"),
                    allowed_member_types: if k == 3 {
                        vec!["User", "Application"]
                    } else {
                        vec!["User"]
                    },
                });
            }
        }
        let mut tags = vec!["WindowsAzureActiveDirectoryIntegratedApp".to_string()];
        if i % 9 == 8 {
            tags.push("HideApp".to_string());
        }
        let sync_jobs = if i % 3 == 1 {
            vec![SyncJob {
                id: format!("scim.{}.{}", sr.uuid().simple(), tenant_id.simple()),
                template_id: "scim",
                state: if i % 6 == 1 { "Active" } else { "Paused" },
                rule_id: sr.uuid().to_string(),
                last_started: None,
            }]
        } else {
            vec![]
        };
        let owners = if i % 2 == 0 && nusers > 0 {
            vec![ObjRef::user(sr.index(nusers))]
        } else {
            vec![]
        };
        push_sp(
            &mut dir,
            ServicePrincipal {
                id: sr.uuid(),
                app_id,
                display_name: name.clone(),
                sp_type: SpType::Application,
                owner_org: Some(if i % 7 == 6 {
                    third_party_org
                } else {
                    tenant_id
                }),
                account_enabled: i % 11 != 10,
                app_roles: roles,
                tags,
                names: vec![
                    app_id.to_string(),
                    format!("https://{}.example.com", slugify(&name)),
                ],
                alternative_names: vec![],
                homepage: Some(format!("https://{}.example.com/", slugify(&name))),
                description: Some(format!("{name} (single sign-on)")),
                assignment_required: i % 5 != 4,
                first_party: false,
                // Every sixth app has no single sign-on: one of them provisions users through
                // its synchronization job (i % 3 == 1), the next neither.
                sso_mode: match i % 6 {
                    4 | 5 => None,
                    3 => Some("password"),
                    _ => Some("saml"),
                },
                owners,
                assigned_to: vec![],
                sync_jobs,
                created: anchor - sr.below(700) as i64 * 86_400,
                deleted: None,
            },
        );
    }
    let sub = sr.uuid();
    for i in 0..sizes.managed_identities {
        let app_id = sr.uuid();
        let explicit = i % 2 == 1;
        let (name, arm) = if explicit {
            let n = format!("id-workload-{i:03}");
            (
                n.clone(),
                format!(
                    "/subscriptions/{sub}/resourcegroups/rg-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
                ),
            )
        } else {
            let n = format!("app-service-{i:03}");
            (
                n.clone(),
                format!(
                    "/subscriptions/{sub}/resourcegroups/rg-web/providers/Microsoft.Web/sites/{n}"
                ),
            )
        };
        push_sp(
            &mut dir,
            ServicePrincipal {
                id: sr.uuid(),
                app_id,
                display_name: name,
                sp_type: SpType::ManagedIdentity,
                owner_org: None,
                account_enabled: true,
                app_roles: vec![],
                tags: vec![],
                names: vec![
                    app_id.to_string(),
                    format!("https://identity.azure.net/{}", sr.uuid().simple()),
                ],
                alternative_names: vec![
                    format!("isExplicit={}", if explicit { "True" } else { "False" }),
                    arm,
                ],
                homepage: None,
                description: None,
                assignment_required: false,
                first_party: false,
                sso_mode: None,
                owners: vec![],
                assigned_to: vec![],
                sync_jobs: vec![],
                created: anchor - sr.below(400) as i64 * 86_400,
                deleted: None,
            },
        );
    }

    gen_groups(&mut dir, cfg, &root, anchor, &domain);
    gen_app_assignments(&mut dir, &root, anchor);
    gen_roles(&mut dir, cfg, &root, anchor);
    gen_licenses(&mut dir, &root);
    gen_audit_history(&mut dir, &root, anchor);

    Generated {
        dir,
        customer_client_id,
        customer_secret,
        customer_sp,
        admin_user,
    }
}

fn slugify(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn push_sp(dir: &mut Directory, sp: ServicePrincipal) {
    let i = dir.sps.len();
    dir.ids.insert(sp.id, ObjRef::sp(i));
    dir.app_ids.insert(sp.app_id, i as u32);
    dir.sps.push(sp);
}

fn gen_users(
    dir: &mut Directory,
    cfg: &SimConfig,
    root: &Rng,
    anchor: i64,
    domain: &str,
    initial_domain: &str,
) {
    let mut r = root.fork(2);
    let n = cfg.sizes.users;
    for i in 0..n {
        let (first, last) = if i == 0 {
            ("Ada", "Admin")
        } else {
            (*r.pick(FIRST), *r.pick(LAST))
        };
        let guest = i % 20 == 7;
        let disabled = i % 20 == 13;
        let on_prem = !guest && i % 5 == 2;
        let nick = if i == 0 {
            "admin".to_string()
        } else {
            format!(
                "{}.{}{}",
                first.to_ascii_lowercase(),
                last.to_ascii_lowercase(),
                i
            )
        };
        let (upn, mail) = if guest {
            (
                format!("{nick}_fabrikam.com#EXT#@{initial_domain}"),
                format!("{nick}@fabrikam.com"),
            )
        } else {
            (format!("{nick}@{domain}"), format!("{nick}@{domain}"))
        };
        let id = r.uuid();
        let created = anchor - 86_400 * (30 + r.below(1000) as i64) - r.below(86_400) as i64;
        let sign_in = (i % 8 != 5).then(|| {
            let last = anchor - r.below(200 * 86_400) as i64;
            SignIn {
                last,
                last_non_interactive: last + r.below(86_400) as i64,
                last_successful: last,
            }
        });
        let usage_location = (i % 10 != 9).then(|| *r.pick(COUNTRIES));
        let user = User {
            id,
            display_name: bs(format!("{first} {last}")),
            given_name: Some(bs(first)),
            surname: Some(bs(last)),
            upn: bs(upn.clone()),
            mail: Some(bs(mail)),
            mail_nickname: bs(nick.replace('.', "")),
            job_title: (!guest).then(|| bs(*r.pick(TITLES))),
            department: (!guest).then(|| bs(*r.pick(DEPARTMENTS))),
            office_location: (!guest).then(|| bs(*r.pick(OFFICES))),
            mobile_phone: (i % 3 == 0).then(|| bs(format!("+1 425 555 {:04}", i % 10_000))),
            business_phone: (!guest).then(|| bs(format!("+1 206 555 {:04}", (i * 7) % 10_000))),
            preferred_language: (i % 4 == 0).then_some("en-US"),
            company_name: (!guest).then_some("Contoso Ltd"),
            employee_id: (!guest).then(|| bs(format!("E{:06}", i))),
            usage_location,
            account_enabled: !disabled,
            guest,
            created,
            on_prem: on_prem.then(|| OnPrem {
                immutable_id: bs(base64_id(&id)),
                sam_account_name: bs(nick.chars().take(20).collect::<String>()),
                sid: bs(format!(
                    "S-1-5-21-1004336348-1177238915-682003330-{}",
                    1000 + i
                )),
                last_sync: anchor - r.below(3600) as i64,
            }),
            sign_in,
            sessions_valid_from: created,
            manager: (i > 0).then_some((i / 8) as u32),
            licenses: Vec::new(),
            deleted: None,
            seq: 1,
        };
        dir.ids.insert(id, ObjRef::user(i));
        dir.upns.insert(upn.to_ascii_lowercase(), i as u32);
        dir.users.push(user);
    }
}

fn base64_id(id: &Uuid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(id.as_bytes())
}

fn group_kind(i: usize, r: &mut Rng) -> GroupKind {
    if i < GroupKind::ALL.len() {
        return GroupKind::ALL[i];
    }
    let x = r.below(100);
    match x {
        0..45 => GroupKind::Security,
        45..75 => GroupKind::Microsoft365,
        75..80 => GroupKind::MailEnabledSecurity,
        80..85 => GroupKind::Distribution,
        85..88 => GroupKind::DynamicSecurity,
        88..90 => GroupKind::DynamicMicrosoft365,
        90..98 => GroupKind::OnPremisesSecurity,
        _ => GroupKind::RoleAssignable,
    }
}

fn gen_groups(dir: &mut Directory, cfg: &SimConfig, root: &Rng, anchor: i64, _domain: &str) {
    let mut r = root.fork(4);
    let ng = cfg.sizes.groups;
    let nu = dir.users.len();
    for i in 0..ng {
        let kind = group_kind(i, &mut r);
        let topic = GROUP_TOPICS[i % GROUP_TOPICS.len()];
        let (name, rule) = match kind {
            GroupKind::Security => (format!("SG-{topic}-{i:05}"), None),
            GroupKind::Microsoft365 => (format!("{topic} Team {i:05}"), None),
            GroupKind::MailEnabledSecurity => (format!("MESG-{topic}-{i:05}"), None),
            GroupKind::Distribution => (format!("DL-{topic}-{i:05}"), None),
            GroupKind::DynamicSecurity => (
                format!("DYN-{topic}-{i:05}"),
                Some(format!("(user.department -eq \"{topic}\")")),
            ),
            GroupKind::DynamicMicrosoft365 => (
                format!("{topic} All Hands {i:05}"),
                Some(format!(
                    "(user.department -eq \"{topic}\") -and (user.accountEnabled -eq true)"
                )),
            ),
            GroupKind::OnPremisesSecurity => (format!("AD-{topic}-{i:05}"), None),
            GroupKind::RoleAssignable => (format!("PRIV-{topic}-Admins-{i:05}"), None),
        };
        let id = r.uuid();
        let nick = slugify(&name);
        let owners = if nu == 0 || kind == GroupKind::OnPremisesSecurity {
            vec![]
        } else {
            let mut o = vec![ObjRef::user(r.index(nu))];
            if i % 3 == 0 {
                o.push(ObjRef::user(r.index(nu)));
            }
            o.sort();
            o.dedup();
            o
        };
        dir.ids.insert(id, ObjRef::group(i));
        dir.groups.push(Group {
            id,
            kind,
            display_name: bs(name.clone()),
            description: Some(bs(format!("{topic} ({kind:?})"))),
            mail_nickname: bs(nick),
            membership_rule: rule.map(bs),
            visibility: kind.unified().then_some("Private"),
            created: anchor - 86_400 * (10 + r.below(900) as i64),
            on_prem_sid: (kind == GroupKind::OnPremisesSecurity).then(|| {
                bs(format!(
                    "S-1-5-21-1004336348-1177238915-682003330-{}",
                    50_000 + i
                ))
            }),
            security_identifier: bs(format!(
                "S-1-12-1-{}-{}",
                r.below(4_000_000_000),
                r.below(4_000_000_000)
            )),
            licenses: Vec::new(),
            members: Vec::new(),
            owners,
            deleted: None,
            seq: 1,
        });
    }
    if ng == 0 || nu == 0 {
        return;
    }
    // Non-user members: nested groups and service principals, a small share of the total.
    let sp_members: Vec<usize> = (0..dir.sps.len())
        .filter(|&s| !dir.sps[s].first_party)
        .collect();
    let nested_target = (cfg.sizes.memberships / 200).max(2).min(ng * 2);
    let sp_target = (cfg.sizes.memberships / 500)
        .max(2)
        .min(sp_members.len() * 4);
    let nestable = |k: GroupKind| matches!(k, GroupKind::Security | GroupKind::Microsoft365);
    let mut extra = 0usize;
    // Group 0 (security) always gets a nested Microsoft 365 group and a service principal, so tests see both.
    if ng > 1 {
        dir.groups[0].members.push(ObjRef::group(1));
        extra += 1;
    }
    if let Some(&s) = sp_members.last() {
        dir.groups[0].members.push(ObjRef::sp(s));
        extra += 1;
    }
    for _ in 0..nested_target {
        let parent = r.index(ng);
        let child = r.index(ng);
        if parent != child && nestable(dir.groups[parent].kind) && nestable(dir.groups[child].kind)
        {
            dir.groups[parent].members.push(ObjRef::group(child));
            extra += 1;
        }
    }
    for _ in 0..sp_target {
        let g = r.index(ng);
        if nestable(dir.groups[g].kind) || dir.groups[g].kind == GroupKind::RoleAssignable {
            dir.groups[g].members.push(ObjRef::sp(*r.pick(&sp_members)));
            extra += 1;
        }
    }
    // User memberships: a skewed size distribution (a few very large groups, many small ones).
    let budget = cfg.sizes.memberships.saturating_sub(extra);
    let mut order: Vec<usize> = (0..ng).collect();
    for k in (1..ng).rev() {
        let j = r.index(k + 1);
        order.swap(k, j);
    }
    let weights: Vec<f64> = (0..ng)
        .map(|rank| 1.0 / ((rank + 2) as f64).powf(0.85))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut picks: Vec<u32> = Vec::new();
    for (rank, &g) in order.iter().enumerate() {
        let want = ((budget as f64 * weights[rank] / total).round() as usize).clamp(1, nu);
        picks.clear();
        if want * 2 >= nu {
            // Dense: everyone except a random sample.
            let mut skip: Vec<u32> = (0..nu - want).map(|_| r.index(nu) as u32).collect();
            skip.sort_unstable();
            skip.dedup();
            picks.extend((0..nu as u32).filter(|u| skip.binary_search(u).is_err()));
        } else {
            while picks.len() < want {
                let need = want - picks.len();
                for _ in 0..need {
                    picks.push(r.index(nu) as u32);
                }
                picks.sort_unstable();
                picks.dedup();
            }
        }
        let grp = &mut dir.groups[g];
        grp.members
            .extend(picks.iter().map(|&u| ObjRef::user(u as usize)));
        grp.members.sort_unstable();
        grp.members.dedup();
    }
}

fn gen_app_assignments(dir: &mut Directory, root: &Rng, anchor: i64) {
    let mut r = root.fork(5);
    let nu = dir.users.len();
    let assignable_groups: Vec<usize> = (0..dir.groups.len())
        .filter(|&g| {
            matches!(
                dir.groups[g].kind,
                GroupKind::Security | GroupKind::Microsoft365 | GroupKind::OnPremisesSecurity
            )
        })
        .collect();
    let mis: Vec<usize> = (0..dir.sps.len())
        .filter(|&s| dir.sps[s].sp_type == SpType::ManagedIdentity)
        .collect();
    if nu == 0 {
        return;
    }
    for s in 0..dir.sps.len() {
        let sp = &dir.sps[s];
        if sp.first_party
            || sp.sp_type != SpType::Application
            || sp.display_name == "Latchkey Connector"
        {
            continue;
        }
        let user_roles: Vec<Uuid> = {
            let v: Vec<Uuid> = sp
                .app_roles
                .iter()
                .filter(|a| a.allowed_member_types.contains(&"User"))
                .map(|a| a.id)
                .collect();
            if v.is_empty() { vec![Uuid::nil()] } else { v }
        };
        let app_roles: Vec<Uuid> = sp
            .app_roles
            .iter()
            .filter(|a| a.allowed_member_types.contains(&"Application"))
            .map(|a| a.id)
            .collect();
        let count = 2 + r.index((nu / 10).clamp(1, 120));
        let mut seen: Vec<(ObjRef, Uuid)> = Vec::new();
        for _ in 0..count {
            let principal = if !assignable_groups.is_empty() && r.chance(0.15) {
                ObjRef::group(*r.pick(&assignable_groups))
            } else {
                ObjRef::user(r.index(nu))
            };
            let role = *r.pick(&user_roles);
            if seen.contains(&(principal, role)) {
                continue;
            }
            seen.push((principal, role));
        }
        if let (Some(&role), false) = (app_roles.first(), mis.is_empty()) {
            seen.push((ObjRef::sp(*r.pick(&mis)), role));
        }
        let mut out = Vec::with_capacity(seen.len());
        for (principal, role) in seen {
            let pid = dir.obj_id(principal);
            out.push(AppRoleAssignment {
                id: app_role_assignment_id(&pid, &mut r),
                app_role_id: role,
                principal,
                created: anchor - r.below(300) as i64 * 86_400,
            });
        }
        dir.sps[s].assigned_to = out;
    }
}

fn gen_roles(dir: &mut Directory, cfg: &SimConfig, root: &Rng, anchor: i64) {
    let mut r = root.fork(6);
    let n = cfg.sizes.role_definitions.clamp(1, ROLE_CATALOG.len());
    for &(id, name, desc, privileged) in &ROLE_CATALOG[..n] {
        dir.roles.push(RoleDef {
            id: Uuid::from_u128(id),
            display_name: name,
            description: desc,
            privileged,
            directory_role_id: r.uuid(),
        });
    }
    let nu = dir.users.len();
    if nu == 0 {
        return;
    }
    let add = |dir: &mut Directory, role: usize, principal: ObjRef, r: &mut Rng| {
        if role >= dir.roles.len()
            || dir
                .role_assignments
                .iter()
                .any(|a| a.role as usize == role && a.principal == principal)
        {
            return;
        }
        let pid = dir.obj_id(principal);
        dir.role_assignments.push(RoleAssignment {
            id: role_assignment_id(&dir.roles[role].id, &pid),
            role: role as u16,
            principal,
            created: anchor - r.below(500) as i64 * 86_400,
            end: None,
            via_pim: false,
        });
    };
    add(dir, 0, ObjRef::user(0), &mut r);
    for k in 1..(4 + nu / 1000) {
        let role = k % dir.roles.len();
        let u = r.index(nu);
        add(dir, role, ObjRef::user(u), &mut r);
    }
    if let Some(g) = dir
        .groups
        .iter()
        .position(|g| g.kind == GroupKind::RoleAssignable)
    {
        add(dir, 2, ObjRef::group(g), &mut r);
    }
    // The customer's app can hold a directory role too (Exchange path needs it).
    if let Some(s) = dir
        .sps
        .iter()
        .position(|s| s.display_name == "Latchkey Connector")
    {
        add(dir, 7, ObjRef::sp(s), &mut r);
    }
    // PIM eligibility.
    let ne = 4 + nu / 500;
    for k in 0..ne {
        let role = (k * 3 + 1) % dir.roles.len();
        let principal = ObjRef::user(1 + r.index(nu.saturating_sub(1).max(1)).min(nu - 1));
        if dir
            .eligibilities
            .iter()
            .any(|e| e.role as usize == role && e.principal == principal)
        {
            continue;
        }
        let start = anchor - r.below(90) as i64 * 86_400;
        let pid = dir.obj_id(principal);
        dir.eligibilities.push(Eligibility {
            id: role_assignment_id(&dir.roles[role].id, &pid).replace("-1", "-1-e"),
            role: role as u16,
            principal,
            created: start,
            start,
            end: (k % 2 == 1).then_some(anchor + 180 * 86_400),
        });
    }
    if let Some(g) = dir
        .groups
        .iter()
        .position(|g| g.kind == GroupKind::RoleAssignable)
        && dir.roles.len() > 3
    {
        let pid = dir.groups[g].id;
        dir.eligibilities.push(Eligibility {
            id: role_assignment_id(&dir.roles[3].id, &pid).replace("-1", "-1-e"),
            role: 3,
            principal: ObjRef::group(g),
            created: anchor - 86_400,
            start: anchor - 86_400,
            end: None,
        });
    }
}

fn gen_licenses(dir: &mut Directory, root: &Rng) {
    let mut r = root.fork(7);
    let nskus = dir.skus.len() as u64;
    for i in 0..dir.users.len() {
        let u = &mut dir.users[i];
        if u.usage_location.is_none() || u.guest || i % 3 == 2 {
            continue;
        }
        let primary = if r.chance(0.8) {
            0
        } else {
            1.min(nskus as u16 - 1)
        };
        u.licenses.push(primary);
        if nskus > 4 && r.chance(0.3) && !u.licenses.contains(&(FULL_SKU)) {
            u.licenses.push(FULL_SKU);
        }
    }
    // Group-based licensing on the first security group and (when present) the first Microsoft 365 group.
    if let Some(g) = dir
        .groups
        .iter()
        .position(|g| g.kind == GroupKind::Security)
    {
        dir.groups[g].licenses = vec![(2u16).min(nskus as u16 - 1)];
        dir.license_groups.push(g as u32);
    }
    if let Some(g) = dir
        .groups
        .iter()
        .position(|g| g.kind == GroupKind::Microsoft365)
        && nskus > 3
    {
        dir.groups[g].licenses = vec![3];
        dir.license_groups.push(g as u32);
    }
    for s in 0..dir.skus.len() {
        let used = dir.consumed_units(s as u16);
        dir.skus[s].enabled = if s as u16 == FULL_SKU {
            used
        } else {
            used + used / 5 + 5
        };
    }
}

fn gen_audit_history(dir: &mut Directory, root: &Rng, anchor: i64) {
    let mut r = root.fork(8);
    let nu = dir.users.len();
    let ng = dir.groups.len();
    if nu == 0 || ng == 0 {
        return;
    }
    for k in 0..20 {
        let g = r.index(ng);
        let u = r.index(nu);
        let time = anchor - (20 - k) * 3600;
        let targets = vec![dir.target(ObjRef::user(u)), dir.target(ObjRef::group(g))];
        let id = format!("Directory_{}", r.uuid().simple());
        dir.audit.push(AuditRecord {
            id,
            category: "GroupManagement",
            activity: "Add member to group".to_string(),
            operation_type: "Assign",
            time,
            result: "success",
            app: None,
            targets,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_profile_covers_every_group_kind_and_is_deterministic() {
        let cfg = SimConfig::small(42);
        let a = generate(&cfg);
        let b = generate(&cfg);
        assert_eq!(a.dir.tenant_id, b.dir.tenant_id);
        assert_eq!(a.customer_secret, b.customer_secret);
        assert_eq!(a.dir.users[5].id, b.dir.users[5].id);
        for kind in GroupKind::ALL {
            assert!(a.dir.groups.iter().any(|g| g.kind == kind), "{kind:?}");
        }
        assert!(a.dir.users.iter().any(|u| u.guest));
        assert!(a.dir.users.iter().any(|u| !u.account_enabled));
        assert!(!a.dir.eligibilities.is_empty());
        assert!(!a.dir.role_assignments.is_empty());
        assert!(
            a.dir
                .sps
                .iter()
                .any(|s| s.sp_type == SpType::ManagedIdentity)
        );
        assert!(!a.dir.license_groups.is_empty());
        let members: usize = a.dir.groups.iter().map(|g| g.members.len()).sum();
        assert!(members > 100, "{members}");
        assert!(
            a.dir.groups[0]
                .members
                .iter()
                .any(|m| m.kind() == ObjKind::ServicePrincipal)
        );
        assert!(a.dir.groups[0].members.windows(2).all(|w| w[0] < w[1]));
    }
}
