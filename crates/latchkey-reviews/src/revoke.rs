//! Carrying out a revoke decision: the provisioning planner is asked first, from the stored
//! model, whether it can remove the grant. If it can, a provisioning task is recorded (its job
//! removes the grant and reads it back from the tenant); if it refuses (a distribution list,
//! access inherited through a group, provisioning turned off, ...), a manual task carries its
//! reason. A grant already gone needs neither.

use latchkey_entra::onboarding::EntraSettings;
use latchkey_entra::provision::{self, Ask, Object, Operation, Request};
use latchkey_store::reviews::{self, Item};
use latchkey_store::{OrgTx, StoreError, connectors, provisioning, resources};

/// What a revoke became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Task(uuid::Uuid),
    Manual(uuid::Uuid),
    NotNeeded,
}

fn object(r: resources::Resource) -> Object {
    Object {
        rtype: r.rtype,
        external_id: r.external_id,
        display_name: r.display_name,
        profile: r.profile,
    }
}

/// The planner's request for removing the item's grant, with whether provisioning is on;
/// `None` when the grant or what it names is gone.
async fn request_for(tx: &mut OrgTx, item: &Item) -> Result<Option<(Request, bool)>, StoreError> {
    let connector = item.connector_id;
    let grant = match provisioning::get_grant(tx, connector, item.grant_id).await {
        Err(StoreError::NotFound) => return Ok(None),
        r => r?,
    };
    let row = match connectors::get(tx, connector).await {
        Err(StoreError::NotFound) => return Ok(None),
        r => r?,
    };
    let enabled = row
        .settings
        .and_then(|v| serde_json::from_value::<EntraSettings>(v).ok())
        .is_some_and(|s| s.provisioning);
    let pim = match row
        .capabilities
        .as_ref()
        .and_then(|c| c.pointer("/features/pim/state"))
        .and_then(serde_json::Value::as_str)
    {
        Some("available") => Some(true),
        Some("unlicensed") => Some(false),
        _ => None,
    };
    let ent = match resources::get_entitlement(tx, connector, grant.entitlement_id).await {
        Err(StoreError::NotFound) => return Ok(None),
        r => r?,
    };
    let resource = match resources::get_resource(tx, connector, ent.resource_id).await {
        Err(StoreError::NotFound) => return Ok(None),
        r => r?,
    };
    let principal = match resources::get_resource(tx, connector, grant.principal_id).await {
        Err(StoreError::NotFound) => return Ok(None),
        r => r?,
    };
    let inherited = grant.expanded || grant.source != "direct";
    Ok(Some((
        Request {
            operation: Operation::Revoke,
            resource: object(resource),
            slug: ent.slug,
            principal: object(principal),
            inherited_via: inherited.then(|| grant.source.clone()),
            current_holders: Some(provisioning::direct_holders(tx, connector, ent.id).await?),
            grant_external_id: Some(grant.external_id).filter(|e| !e.is_empty()),
            pim,
            end: None,
        },
        enabled,
    )))
}

/// Starts the revoke of a decided item, in the caller's transaction, and records on the item
/// what it became.
pub async fn carry_out(
    tx: &mut OrgTx,
    item: &Item,
    requested_by: &str,
) -> Result<Revocation, StoreError> {
    let Some((req, enabled)) = request_for(tx, item).await? else {
        reviews::set_revocation_note(
            tx,
            item.id,
            "The access was already gone when the decision was made (a sync or another revoke removed it); nothing to change.",
        )
        .await?;
        return Ok(Revocation::NotNeeded);
    };
    match provision::plan(&req, enabled) {
        Err(refusal) => {
            let id = reviews::create_manual_task(tx, item.id, &refusal.to_string()).await?;
            Ok(Revocation::Manual(id))
        }
        Ok(_) => {
            let task = provision::request(
                tx,
                item.connector_id,
                Ask::Revoke {
                    grant: item.grant_id,
                },
                requested_by,
            )
            .await?;
            reviews::set_revocation_task(tx, item.id, task).await?;
            Ok(Revocation::Task(task))
        }
    }
}
