//! `latchkey audit verify --org ID`: recomputes an organization's audit hash chain and
//! reports the first broken link.

use crate::cli::{AuditCommand, GlobalArgs};
use crate::config;
use latchkey_core::OrgId;
use latchkey_store::audit;
use serde_json::json;

pub async fn run(global: &GlobalArgs, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { org } => {
            let org_id: OrgId = org
                .parse()
                .map_err(|_| anyhow::anyhow!("--org must be an organization id (a UUID)"))?;
            let store =
                super::connect_and_migrate(&config::database_url(global.database_url.clone())?)
                    .await?;
            let mut tx = store.org_tx(org_id).await?;
            let check = audit::verify_chain(&mut tx).await?;
            tx.commit().await?;
            println!(
                "{}",
                json!({"org_id": org_id, "events": check.events, "intact": check.intact(), "broken_at": check.broken_at})
            );
            if let Some(seq) = check.broken_at {
                anyhow::bail!(
                    "the audit trail of organization {org_id} is broken at event {seq}: that row (or the one before it) was changed, removed or reordered"
                );
            }
            Ok(())
        }
    }
}
