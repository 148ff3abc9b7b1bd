//! Admin > Connectors: list, catalog, add (app and owners), connector page, settings, OAuth consent.

pub mod add;
pub mod consent;
pub mod list;
pub mod page;
pub mod self_hosted;
pub mod settings;

use crate::auth::SignedIn;
use crate::connectors::Actor;

pub fn actor(who: &SignedIn) -> Actor {
    Actor {
        org: who.org_id,
        user: Some(who.user_id),
        role: who.role,
    }
}

/// Words for a status value.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "setup_required" => "Setup required",
        "pending_consent" => "Pending consent",
        "syncing" => "Syncing",
        "connected" => "Connected",
        "error" => "Error",
        "disabled" => "Disabled",
        _ => "Unknown",
    }
}

/// The badge style for a status value.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "connected" => "badge-ok",
        "error" => "badge-error",
        "disabled" => "badge-muted",
        _ => "badge-pending",
    }
}
