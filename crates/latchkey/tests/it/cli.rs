use crate::support::{latchkey, run, stderr, stdout};
use latchkey_crypto::{KeyRing, SecretString, generate_key_entry};
use latchkey_store::secrets::{self, SecretRef};
use latchkey_store::testing::TestDb;

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["worker", "--help"],
        vec!["migrate", "--help"],
        vec!["demo", "--help"],
        vec!["keys", "generate", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["orgs", "create", "--help"],
        vec!["api-clients", "create", "--help"],
    ] {
        let o = run(latchkey().args(&args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage:"), "{args:?}");
    }
    let help = stdout(&run(latchkey().args(["serve", "--help"])));
    assert!(
        help.contains("LATCHKEY_LISTEN")
            && help.contains("LATCHKEY_MASTER_KEYS")
            && help.contains("DATABASE_URL")
    );
}

#[test]
fn bad_configuration_is_one_line_and_exit_code_2() {
    let key = generate_key_entry("k1");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("LATCHKEY_LISTEN", "not-an-address"),
                ("LATCHKEY_MASTER_KEYS", &key),
            ],
            "LATCHKEY_LISTEN",
        ),
        (
            vec![
                ("DATABASE_URL", "mysql://localhost/db"),
                ("LATCHKEY_MASTER_KEYS", &key),
            ],
            "DATABASE_URL",
        ),
        (
            vec![
                ("LATCHKEY_PUBLIC_URL", "ftp://x"),
                ("LATCHKEY_MASTER_KEYS", &key),
            ],
            "LATCHKEY_PUBLIC_URL",
        ),
        (vec![], "LATCHKEY_MASTER_KEYS is not set"),
        (
            vec![("LATCHKEY_MASTER_KEYS", "k1:dG9vc2hvcnQ=")],
            "LATCHKEY_MASTER_KEYS is malformed",
        ),
        (
            vec![
                ("LATCHKEY_LOG_FORMAT", "xml"),
                ("LATCHKEY_MASTER_KEYS", &key),
            ],
            "LATCHKEY_LOG_FORMAT",
        ),
        (
            vec![
                ("LATCHKEY_DB_STATEMENT_TIMEOUT_SECS", "soon"),
                ("LATCHKEY_MASTER_KEYS", &key),
            ],
            "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS",
        ),
    ];
    for (env, expected) in cases {
        let mut cmd = latchkey();
        cmd.arg("serve").envs(env.iter().copied());
        let o = run(&mut cmd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(expected) && err.contains("expected"),
            "{env:?}: {err}"
        );
        assert!(!err.contains("dG9vc2hvcnQ"), "secrets are never echoed");
    }
}

#[test]
fn the_connector_refuses_account_deletion_without_provisioning() {
    let mut cmd = latchkey();
    cmd.arg("connector").envs([
        ("LATCHKEY_URL", "https://latchkey.example.com"),
        ("LATCHKEY_CLIENT_ID", "lkac_x"),
        ("LATCHKEY_CLIENT_SECRET", "lkas_x"),
        ("ENTRA_TENANT_ID", "00000000-0000-0000-0000-000000000001"),
        ("ENTRA_CLIENT_ID", "00000000-0000-0000-0000-000000000002"),
        ("ENTRA_CLIENT_SECRET", "x"),
        ("LATCHKEY_PROVISIONING", "false"),
        ("LATCHKEY_ALLOW_ACCOUNT_DELETION", "true"),
    ]);
    let o = run(&mut cmd);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("LATCHKEY_ALLOW_ACCOUNT_DELETION") && err.contains("LATCHKEY_PROVISIONING"),
        "{err}"
    );
}

#[test]
fn keys_generate_prints_a_usable_entry() {
    let o = run(latchkey().args(["keys", "generate", "--id", "prod-2026"]));
    assert!(o.status.success());
    let entry = stdout(&o);
    assert!(entry.starts_with("prod-2026:"));
    KeyRing::parse(entry.trim()).expect("a valid key ring entry");
    let o = run(latchkey().args(["keys", "generate", "--id", "bad id"]));
    assert!(!o.status.success());
}

#[tokio::test]
async fn orgs_and_api_clients_are_created_from_the_cli() {
    let db = TestDb::new().await;
    let o = run(latchkey().env("DATABASE_URL", &db.url).args([
        "orgs",
        "create",
        "--name",
        "Acme",
        "--admin-email",
        "ops@acme.example",
        "--admin-password",
        "correct horse battery staple",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let created: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let org_id = created["org_id"].as_str().unwrap().to_string();
    assert!(created["user_id"].is_string());

    let o = run(latchkey().env("DATABASE_URL", &db.url).args([
        "api-clients",
        "create",
        "--org",
        &org_id,
        "--name",
        "ci",
        "--role",
        "member",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let creds: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(creds["client_id"].as_str().unwrap().starts_with("lkc_"));
    let secret = creds["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("lks_"));
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret_hash FROM api_clients")
        .fetch_all(db.store.system())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], secret, "stored hashed");

    // Bad input: clear errors, nothing stored.
    for args in [
        vec![
            "api-clients",
            "create",
            "--org",
            "nope",
            "--name",
            "x",
            "--role",
            "member",
        ],
        vec![
            "api-clients",
            "create",
            "--org",
            "00000000-0000-0000-0000-000000000000",
            "--name",
            "x",
            "--role",
            "member",
        ],
        vec![
            "api-clients",
            "create",
            "--org",
            org_id.as_str(),
            "--name",
            "x",
            "--role",
            "owner",
        ],
        vec![
            "orgs",
            "create",
            "--name",
            "B",
            "--admin-email",
            "ops@acme.example",
            "--admin-password",
            "correct horse battery staple",
        ],
        vec![
            "orgs",
            "create",
            "--name",
            "B",
            "--admin-email",
            "b@b.example",
            "--admin-password",
            "short",
        ],
    ] {
        let o = run(latchkey().env("DATABASE_URL", &db.url).args(&args));
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("--org")
                || err.contains("--role")
                || err.contains("--admin-email")
                || err.contains("--admin-password"),
            "{err}"
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_clients")
        .fetch_one(db.store.system())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
        .fetch_one(db.store.system())
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn keys_rotate_reencrypts_and_reports_counts() {
    let db = TestDb::new().await;
    let (org, _) = latchkey_store::orgs::create_with_admin(
        &db.store,
        &latchkey_core::DisplayName::parse("Acme").unwrap(),
        &latchkey_core::Email::parse("a@acme.example").unwrap(),
        &latchkey_core::DisplayName::parse("A").unwrap(),
        "h",
    )
    .await
    .unwrap();
    let old = generate_key_entry("old");
    let ring = KeyRing::parse(&old).unwrap();
    let mut tx = db.store.org_tx(org).await.unwrap();
    for _ in 0..3 {
        let at = SecretRef {
            owner_table: "connectors",
            owner_id: uuid::Uuid::now_v7(),
            field: "client_secret",
        };
        secrets::put(
            &mut tx,
            &ring,
            at,
            &SecretString::from("s3cret".to_string()),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let keys = format!("{},{old}", generate_key_entry("new"));
    let o = run(latchkey()
        .env("DATABASE_URL", &db.url)
        .env("LATCHKEY_MASTER_KEYS", &keys)
        .args(["keys", "rotate"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"active_key": "new", "rotated": 3, "already_current": 0, "failed": 0})
    );
    let o = run(latchkey()
        .env("DATABASE_URL", &db.url)
        .args(["keys", "status"]));
    let status: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(status["secrets_by_key"], serde_json::json!({"new": 3}));

    // Rotating with a ring that cannot open the secrets fails loudly and changes nothing.
    let o = run(latchkey()
        .env("DATABASE_URL", &db.url)
        .env("LATCHKEY_MASTER_KEYS", generate_key_entry("other"))
        .args(["keys", "rotate"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("could not be decrypted"));
}

/// The environment variables the issue names, and every one the Kubernetes manifests in
/// `deploy/kubernetes/` set (commented-out optional ones included), are settings that
/// `latchkey connector --help` lists: a renamed or dropped variable breaks this test, not a
/// customer's deployment.
#[test]
fn the_connector_help_lists_every_variable_the_issue_and_the_manifests_name() {
    let help = stdout(&run(latchkey().args(["connector", "--help"])));
    let mut names: Vec<String> = [
        "LATCHKEY_URL",
        "LATCHKEY_CLIENT_ID",
        "LATCHKEY_CLIENT_SECRET",
        "ENTRA_TENANT_ID",
        "ENTRA_CLIENT_ID",
        "ENTRA_CLIENT_SECRET",
        "ENTRA_GRAPH_DOMAIN",
        "ENTRA_LOGIN_AUTHORITY",
        "LATCHKEY_PROVISIONING",
        "ENTRA_SKIP_AD_GROUPS",
        "ENTRA_FETCH_SIGN_IN_ACTIVITY",
        "ENTRA_SCHEDULE_SCIM_PROVISIONING",
        "ENTRA_DISABLE_AUDIT_FEED",
    ]
    .map(String::from)
    .to_vec();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let mut from_manifests = 0;
    for file in ["latchkey-connector-secrets.yaml", "latchkey-connector.yaml"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for line in text.lines() {
            let line = line
                .trim_start_matches([' ', '#'])
                .trim_start_matches("- name: ");
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let rest = &line[name.len()..];
            if (name.starts_with("LATCHKEY_") || name.starts_with("ENTRA_"))
                && (rest.starts_with(':') || rest.is_empty())
            {
                from_manifests += 1;
                names.push(name);
            }
        }
    }
    assert!(
        from_manifests >= 14,
        "manifests name {from_manifests} variables"
    );
    for name in names {
        assert!(
            help.contains(&name),
            "`latchkey connector --help` does not list {name}"
        );
    }
}
