//! `latchkey api-clients create`.

use crate::cli::{ApiClientsCommand, GlobalArgs};
use crate::config;
use anyhow::bail;
use latchkey_core::{DisplayName, OrgId, Role};
use latchkey_store::orgs;
use serde_json::json;

pub async fn run(global: &GlobalArgs, cmd: ApiClientsCommand) -> anyhow::Result<()> {
    let ApiClientsCommand::Create { org, name, role } = cmd;
    let org: OrgId = org
        .parse()
        .map_err(|_| anyhow::anyhow!("--org: expected an organization id (a UUID)"))?;
    let name = DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let store =
        super::connect_and_migrate(&config::database_url(global.database_url.clone())?).await?;
    if !orgs::exists(&store, org).await? {
        bail!("--org: no organization with id {org}");
    }
    let (_, creds) =
        latchkey_web::api::api_clients::create_client(&store, org, &name, role, None).await?;
    println!(
        "{}",
        json!({"client_id": creds.client_id, "client_secret": creds.client_secret})
    );
    Ok(())
}
