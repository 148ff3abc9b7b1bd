//! The connector page: status and reason, settings, owners, detected capabilities, secret
//! expiry, syncs, and a live log of the current job.

use super::{actor, status_class, status_label};
use crate::api::jobs::{LogPage, read_logs};
use crate::auth::SignedIn;
use crate::connectors::{self, ConnectorView, connector_view};
use crate::csrf;
use crate::error::WebError;
use crate::state::AppState;
use crate::views::Nav;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_entra::probe::ConnectionReport;
use latchkey_store::connectors as store;
use latchkey_store::jobs::{self as queue, Job, JobFilter, JobId, JobLog};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

#[derive(Template, WebTemplate)]
#[template(path = "connector.html")]
pub struct ConnectorPage {
    nav: Nav,
    c: ConnectorView,
    can_edit: bool,
    notice: Option<&'static str>,
    report: Option<ConnectionReport>,
    secret_warning: Option<String>,
    settings_lines: Vec<(&'static str, String)>,
    jobs: Vec<Job>,
    log_job: Option<Uuid>,
    /// Whether the followed job had finished when the page was rendered.
    log_job_done: bool,
    log: Vec<JobLog>,
    log_cursor: String,
}

impl ConnectorPage {
    fn label(&self) -> &'static str {
        status_label(&self.c.status)
    }
    fn class(&self) -> &'static str {
        status_class(&self.c.status)
    }
    fn when(&self, t: &Option<time::OffsetDateTime>) -> String {
        t.map(|t| format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute()))
            .unwrap_or_else(|| "—".into())
    }
    fn is_missing(&self, permission: &str) -> bool {
        self.report.as_ref().is_some_and(|r| {
            r.permissions
                .missing
                .iter()
                .any(|m| m.permission == permission)
        })
    }
    fn level_class(&self, level: &latchkey_entra::probe::Level) -> &'static str {
        match level {
            latchkey_entra::probe::Level::Error => "error",
            latchkey_entra::probe::Level::Warning => "warning",
            latchkey_entra::probe::Level::Info => "info",
        }
    }
    fn kind_label(&self, kind: &str) -> &'static str {
        match kind {
            "entra.connection_test" => "Connection test",
            "entra.sync" | "connector_agent.sync" => "Sync",
            "connector_agent.provision" => "Provisioning",
            _ => "Job",
        }
    }
}

#[derive(Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

fn setting_lines(settings: &Value) -> Vec<(&'static str, String)> {
    let s = |k: &str| {
        settings
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let b = |k: &str| {
        if settings.get(k).and_then(Value::as_bool).unwrap_or(false) {
            "On"
        } else {
            "Off"
        }
        .to_string()
    };
    let auth = settings.get("auth").cloned().unwrap_or_default();
    let mode = auth.get("mode").and_then(Value::as_str).unwrap_or("");
    let mut lines = vec![
        (
            "Authentication",
            if mode == "oauth" {
                "OAuth (admin consent)".to_string()
            } else {
                "Client secret".to_string()
            },
        ),
        (
            "Entra tenant ID",
            auth.get("tenant_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
    ];
    if mode != "oauth" {
        lines.push((
            "Client ID",
            auth.get("client_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ));
        let set = settings
            .get("client_secret_set")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let at = settings
            .get("client_secret_set_at")
            .and_then(Value::as_str)
            .map(|t| t.get(..10).unwrap_or(t).to_string());
        lines.push((
            "Client secret",
            match (set, at) {
                (true, Some(at)) => format!("Set on {at} (never shown again)"),
                (true, None) => "Set (never shown again)".into(),
                _ => "Not set".into(),
            },
        ));
        if let Some(exp) = settings
            .get("client_secret_expires_at")
            .and_then(Value::as_str)
        {
            lines.push((
                "Client secret expires",
                exp.get(..10).unwrap_or(exp).to_string(),
            ));
        }
    }
    lines.push(("Microsoft Graph domain", s("graph_domain")));
    if let Some(l) = settings.get("login_authority").and_then(Value::as_str) {
        lines.push(("Login authority", l.to_string()));
    }
    lines.extend([
        ("Provisioning", b("provisioning")),
        ("Skip on-premises AD groups", b("skip_ad_groups")),
        ("Fetch user sign-in activity", b("fetch_sign_in_activity")),
        (
            "Schedule SCIM provisioning",
            b("schedule_scim_provisioning"),
        ),
        ("Allow deleting accounts", b("allow_account_deletion")),
        (
            "Resource-changed event feed",
            if settings
                .get("disable_audit_feed")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                "Disabled".into()
            } else {
                "Enabled".into()
            },
        ),
    ]);
    lines
}

pub async fn show(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Query(q): Query<PageQuery>,
) -> Result<ConnectorPage, WebError> {
    let mut tx = who.tx(&state).await?;
    let row = store::get(&mut tx, id).await?;
    let can_edit = connectors::may_edit(&mut tx, &actor(&who), id).await?;
    let view = connector_view(&mut tx, row).await?;
    let jobs = queue::list(
        &mut tx,
        &JobFilter {
            connector_id: Some(id),
            ..Default::default()
        },
        None,
        Some(20),
    )
    .await?
    .items;
    // The live log follows the newest job of this connector.
    let log_job = jobs.first().map(|j| j.id.as_uuid());
    let log_job_done = jobs.first().is_some_and(|j| j.status.is_final());
    let log = match log_job {
        Some(j) => queue::logs(&mut tx, JobId(j), None, Some(200)).await?,
        None => vec![],
    };
    tx.commit().await?;
    let report: Option<ConnectionReport> = view
        .capabilities
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let secret_warning = report.as_ref().and_then(|r| r.client_secret.as_ref()).and_then(|s| match s.days_left {
        Some(d) if d < 0 => Some(format!("The client secret expired {} days ago: create a new one in Entra > App registrations > Certificates & secrets and paste it in Settings.", -d)),
        Some(d) if d <= latchkey_entra::probe::SECRET_EXPIRY_WARNING_DAYS => Some(format!(
            "The client secret expires in {d} days ({}): create a new one in Entra > App registrations > Certificates & secrets and paste it in Settings before then.",
            s.expires_at.as_deref().map(|t| t.get(..10).unwrap_or(t)).unwrap_or("soon")
        )),
        _ => None,
    });
    let log_cursor = log.last().map(|l| l.id).unwrap_or(0).to_string();
    Ok(ConnectorPage {
        nav: Nav::new(&who, "connectors"),
        settings_lines: view
            .settings
            .as_ref()
            .map(setting_lines)
            .unwrap_or_default(),
        c: view,
        can_edit,
        notice: match q.notice.as_deref() {
            Some("testing") => Some(
                "Settings saved. Latchkey is testing the connection; this page shows the result.",
            ),
            Some("consented") => {
                Some("Admin consent verified. Latchkey is testing the connection.")
            }
            Some("test") => Some("Connection test started."),
            Some("disabled") => Some("Connector disabled; its credentials were removed."),
            _ => None,
        },
        report,
        secret_warning,
        jobs,
        log_job,
        log_job_done,
        log,
        log_cursor,
    })
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf_token: String,
}

pub async fn test(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    connectors::test_again(&state, &actor(&who), id).await?;
    Ok(Redirect::to(&format!("/connectors/{id}?notice=test")).into_response())
}

pub async fn disable(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<Uuid>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, WebError> {
    csrf::verify_session(&who, &form.csrf_token)?;
    connectors::disable(&state, &actor(&who), id).await?;
    Ok(Redirect::to(&format!("/connectors/{id}?notice=disabled")).into_response())
}

#[derive(Deserialize)]
pub struct LogQuery {
    after: Option<String>,
}

/// JSON for the page's live log (session-authenticated; same shape as the API's).
pub async fn log_json(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, job)): Path<(Uuid, Uuid)>,
    Query(q): Query<LogQuery>,
) -> Result<Response, WebError> {
    let mut tx = who.tx(&state).await?;
    let job_row = queue::get(&mut tx, JobId(job)).await?;
    let row = store::get(&mut tx, id).await?;
    tx.commit().await?;
    if job_row.connector_id != Some(id) {
        return Err(WebError::NotFound);
    }
    let page: LogPage = read_logs(
        &state,
        who.org_id,
        JobId(job),
        q.after.as_deref(),
        Some(500),
    )
    .await
    .map_err(|e| WebError::BadRequest(e.message))?;
    Ok(Json(serde_json::json!({
        "items": page.items,
        "next_cursor": page.next_cursor,
        "job_status": job_row.status,
        "status": row.status,
        "status_label": status_label(&row.status),
        "status_reason": row.status_reason,
    }))
    .into_response())
}
