//! Database trouble in words a person can act on: the SQLSTATEs PostgreSQL reports when its
//! disk is full, a statement runs past `statement_timeout`, the server restarts, or the
//! database is read-only, each with what to do. Used for the reasons failed jobs show.

use crate::StoreError;

/// The explanation of `e`, when it is database trouble we recognise.
pub(crate) fn explain(e: &StoreError) -> Option<String> {
    let StoreError::Db(err) = e else {
        return None;
    };
    match err {
        sqlx::Error::Database(db) => {
            let said = db.message();
            let code = db.code();
            sqlstate(code.as_deref().unwrap_or(""), said)
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Some(format!(
            "The database could not be reached ({err}): check that PostgreSQL is running and reachable from Latchkey; the job is retried on its own."
        )),
        _ => None,
    }
}

fn sqlstate(code: &str, said: &str) -> Option<String> {
    let text = match code {
        "53100" => format!(
            "The database server is out of disk space (PostgreSQL: {said}): free space on its disk or grow its volume; the job is retried on its own."
        ),
        "53200" => format!(
            "The database server ran out of memory (PostgreSQL: {said}): give it more memory or run fewer jobs at once (LATCHKEY_WORKER_CONCURRENCY); the job is retried on its own."
        ),
        "53300" => format!(
            "The database refused a connection (PostgreSQL: {said}): raise max_connections or run fewer workers; the job is retried on its own."
        ),
        "57014" if said.contains("statement timeout") => format!(
            "A database statement ran longer than the statement timeout and was cancelled (PostgreSQL: {said}): raise LATCHKEY_DB_STATEMENT_TIMEOUT_SECS, or find what slows the database (locks, load); the job is retried on its own."
        ),
        "57014" => format!(
            "A database statement was cancelled (PostgreSQL: {said}), for example by an administrator; the job is retried on its own."
        ),
        "57P01" | "57P02" | "57P03" => format!(
            "The database server restarted or is shutting down (PostgreSQL: {said}); the job is retried once it is back."
        ),
        "25006" => format!(
            "The database is read-only (PostgreSQL: {said}): point DATABASE_URL at the primary server, or turn default_transaction_read_only off; the job is retried on its own."
        ),
        "42501" => format!(
            "Latchkey's database role lacks a privilege (PostgreSQL: {said}): restore the table privileges the migrations grant to latchkey_app; the job is retried on its own."
        ),
        "40001" | "40P01" => format!(
            "The database aborted the transaction because of a conflict with another one (PostgreSQL: {said}); the job is retried on its own."
        ),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::sqlstate;

    #[test]
    fn known_trouble_says_what_to_do_and_keeps_what_postgres_said() {
        let full = sqlstate(
            "53100",
            "could not extend file \"base/1/2\": No space left on device",
        )
        .unwrap();
        assert!(full.starts_with("The database server is out of disk space"));
        assert!(full.contains("No space left on device") && full.contains("free space"));
        let slow = sqlstate("57014", "canceling statement due to statement timeout").unwrap();
        assert!(
            slow.contains("LATCHKEY_DB_STATEMENT_TIMEOUT_SECS"),
            "{slow}"
        );
        let cancelled = sqlstate("57014", "canceling statement due to user request").unwrap();
        assert!(!cancelled.contains("LATCHKEY_DB_STATEMENT_TIMEOUT_SECS"));
        assert!(sqlstate("23505", "duplicate key").is_none());
    }
}
