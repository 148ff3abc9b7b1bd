use std::process::{Command, Output};

pub fn latchkey() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    // Start from a clean slate: only what each test sets.
    for var in [
        "DATABASE_URL",
        "LATCHKEY_LISTEN",
        "LATCHKEY_PUBLIC_URL",
        "LATCHKEY_MASTER_KEYS",
        "LATCHKEY_LOG_FORMAT",
        "LATCHKEY_DB_STATEMENT_TIMEOUT_SECS",
    ] {
        c.env_remove(var);
    }
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running latchkey")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `kill -9`: `Child::kill` sends SIGKILL on Unix; the process gets no chance to clean up.
pub fn kill9(child: &mut std::process::Child) {
    child.kill().ok();
    child.wait().ok();
}

/// Polls `f` until it yields a value; panics naming `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// What `connector` holds, in natural keys (comparable across connectors).
pub async fn snapshot(
    store: &latchkey_store::Store,
    org: uuid::Uuid,
    connector: uuid::Uuid,
) -> (
    Vec<(String, String, String, serde_json::Value)>,
    Vec<latchkey_store::resources::GrantKey>,
) {
    let mut tx = store.org_tx(latchkey_core::OrgId(org)).await.unwrap();
    let s = latchkey_store::resources::snapshot(&mut tx, connector)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    s
}

/// `(entitlement id, principal id, group, user)` on `connector`: membership of a plain
/// security group of the simulated tenant for an enabled cloud user who is not in it.
pub async fn membership_to_grant(
    sim: &latchkey_entra_sim::SimHandle,
    store: &latchkey_store::Store,
    connector: uuid::Uuid,
) -> (uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    let group = sim
        .truth_groups()
        .into_iter()
        .find(|g| g.kind == latchkey_entra_sim::GroupKind::Security)
        .expect("a security group");
    let members = sim.group_members(group.id).unwrap();
    let user = sim
        .truth_users()
        .into_iter()
        .find(|u| !members.contains(&u.id) && u.account_enabled && !u.on_premises_sync_enabled)
        .expect("a user outside the group");
    let (entitlement,): (uuid::Uuid,) = sqlx::query_as(
        "SELECT e.id FROM entitlements e JOIN resources r ON r.id = e.resource_id
          WHERE r.connector_id = $1 AND r.external_id = $2 AND e.slug = 'members'",
    )
    .bind(connector)
    .bind(group.id.to_string())
    .fetch_one(store.system())
    .await
    .unwrap();
    let (principal,): (uuid::Uuid,) =
        sqlx::query_as("SELECT id FROM resources WHERE connector_id = $1 AND external_id = $2")
            .bind(connector)
            .bind(user.id.to_string())
            .fetch_one(store.system())
            .await
            .unwrap();
    (entitlement, principal, group.id, user.id)
}
