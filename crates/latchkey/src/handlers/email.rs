//! Delivers the email outbox over SMTP (lettre). Without an SMTP server configured the
//! messages stay in the outbox (the demo shows them on its Outbox page).

use crate::cli::MailArgs;
use crate::config::ConfigError;
use latchkey_jobs::{JobContext, JobError, JobHandler, LogLevel};
use latchkey_store::outbox;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::json;

#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    pub fn from_args(args: &MailArgs) -> Result<Self, ConfigError> {
        let from_raw = args
            .email_from
            .clone()
            .unwrap_or_else(|| "Latchkey <latchkey@localhost>".to_string());
        let from: Mailbox = from_raw.parse().map_err(|_| ConfigError {
            var: "LATCHKEY_EMAIL_FROM",
            problem: format!("={from_raw:?} is not valid"),
            expected: "a sender such as \"Latchkey <latchkey@example.com>\"".into(),
        })?;
        let transport = match args.smtp_url.as_deref().filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.trim())
                    .map_err(|_| ConfigError {
                        var: "LATCHKEY_SMTP_URL",
                        problem: "is malformed".into(),
                        expected: "smtp://host:port or smtps://user:password@host (see lettre's URL format)".into(),
                    })?
                    .build(),
            ),
        };
        Ok(Self { transport, from })
    }

    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }
}

pub struct EmailDeliveryHandler {
    mailer: Mailer,
}

impl EmailDeliveryHandler {
    pub fn new(mailer: Mailer) -> Self {
        Self { mailer }
    }
}

fn store_err(e: latchkey_store::StoreError) -> JobError {
    JobError::transient(e.operator_message())
}

impl JobHandler for EmailDeliveryHandler {
    fn kind(&self) -> &str {
        latchkey_web::connectors::EMAIL_JOB
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let Some(transport) = &self.mailer.transport else {
            ctx.log(
                LogLevel::Info,
                "No SMTP server is configured (LATCHKEY_SMTP_URL): messages stay in the outbox.",
                json!({}),
            )
            .await?;
            return Ok(());
        };
        let mut failures = 0;
        let mut after = None;
        loop {
            let (mut tx, batch) = outbox::claim_unsent(ctx.store(), after, 20)
                .await
                .map_err(store_err)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            for mail in &batch {
                let to: Result<Mailbox, _> = mail.to_address.parse();
                let message = to.map_err(|e| e.to_string()).and_then(|to| {
                    Message::builder()
                        .from(self.mailer.from.clone())
                        .to(to)
                        .subject(mail.subject.clone())
                        .body(mail.body_text.clone())
                        .map_err(|e| e.to_string())
                });
                let result = match message {
                    Ok(m) => transport
                        .send(m)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        outbox::mark_sent(&mut tx, mail.id)
                            .await
                            .map_err(store_err)?;
                    }
                    Err(e) => {
                        failures += 1;
                        outbox::mark_failed(&mut tx, mail.id, &e)
                            .await
                            .map_err(store_err)?;
                        ctx.log(
                            LogLevel::Warn,
                            "could not send an email",
                            json!({"email_id": mail.id, "error": e}),
                        )
                        .await?;
                    }
                }
            }
            tx.commit().await.map_err(|e| store_err(e.into()))?;
            ctx.check_in().await?;
        }
        if failures > 0 {
            return Err(JobError::transient(format!(
                "{failures} email(s) could not be sent; they will be retried"
            )));
        }
        Ok(())
    }
}
