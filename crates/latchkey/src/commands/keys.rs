//! `latchkey keys`: generate a master key, re-encrypt secrets under the active key, report.

use crate::cli::{GlobalArgs, KeysCommand};
use crate::config;
use latchkey_store::secrets;
use serde_json::json;

pub async fn run(global: &GlobalArgs, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Generate { id } => {
            let id = id.unwrap_or_else(default_key_id);
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                anyhow::bail!("the key id must be letters, digits, '-' or '_'");
            }
            println!("{}", latchkey_crypto::generate_key_entry(&id));
            eprintln!(
                "Put this entry FIRST in LATCHKEY_MASTER_KEYS (comma-separated; keep older keys after it), restart, then run `latchkey keys rotate`."
            );
            Ok(())
        }
        KeysCommand::Rotate { keys } => {
            let ring = config::master_keys(keys.master_keys)?;
            let store =
                super::connect_and_migrate(&config::database_url(global.database_url.clone())?)
                    .await?;
            let report = secrets::rotate_all(&store, &ring, 500).await?;
            println!(
                "{}",
                json!({"active_key": ring.active().id(), "rotated": report.rotated, "already_current": report.already_current, "failed": report.failed})
            );
            if report.failed > 0 {
                anyhow::bail!(
                    "{} secret(s) could not be decrypted with any key in LATCHKEY_MASTER_KEYS; they were left as they are",
                    report.failed
                );
            }
            Ok(())
        }
        KeysCommand::Status => {
            let store =
                super::connect_and_migrate(&config::database_url(global.database_url.clone())?)
                    .await?;
            let counts = secrets::count_by_key(&store).await?;
            let by_key: serde_json::Map<String, serde_json::Value> =
                counts.into_iter().map(|(k, n)| (k, json!(n))).collect();
            println!("{}", json!({ "secrets_by_key": by_key }));
            Ok(())
        }
    }
}

fn default_key_id() -> String {
    let today = time::OffsetDateTime::now_utc().date();
    format!(
        "k{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    )
}
