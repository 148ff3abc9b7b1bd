//! `latchkey orgs create`: what the sign-up page does, for automation.

use crate::cli::{GlobalArgs, OrgsCommand};
use crate::config;
use anyhow::bail;
use latchkey_core::{DisplayName, Email, Password};
use latchkey_store::{StoreError, orgs};
use serde_json::json;

pub async fn run(global: &GlobalArgs, cmd: OrgsCommand) -> anyhow::Result<()> {
    let OrgsCommand::Create {
        name,
        admin_email,
        admin_password,
        admin_name,
    } = cmd;
    let name = DisplayName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let email = Email::parse(&admin_email).map_err(|e| anyhow::anyhow!("--admin-email: {e}"))?;
    let password =
        Password::parse(&admin_password).map_err(|e| anyhow::anyhow!("--admin-password: {e}"))?;
    let admin_name = admin_name.unwrap_or_else(|| {
        email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("Admin")
            .to_string()
    });
    let admin_name =
        DisplayName::parse(&admin_name).map_err(|e| anyhow::anyhow!("--admin-name: {e}"))?;
    let store =
        super::connect_and_migrate(&config::database_url(global.database_url.clone())?).await?;
    let hash = latchkey_web::auth::password::hash(&password).await?;
    match orgs::create_with_admin(&store, &name, &email, &admin_name, &hash).await {
        Ok((org, user)) => {
            println!("{}", json!({"org_id": org, "user_id": user}));
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => {
            bail!("--admin-email: an account with {email} already exists")
        }
        Err(e) => Err(e.into()),
    }
}
