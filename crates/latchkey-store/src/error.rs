use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `field` names what collided, for a 422.
    #[error("{field} is already taken")]
    Conflict { field: &'static str },
    #[error("invalid cursor")]
    InvalidCursor,
    #[error(transparent)]
    Crypto(#[from] latchkey_crypto::KeyRingError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Maps a unique violation on `constraint` to a field conflict, leaving other errors as they are.
    pub(crate) fn on_unique(err: sqlx::Error, constraint: &str, field: &'static str) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
            && db.constraint() == Some(constraint)
        {
            return StoreError::Conflict { field };
        }
        StoreError::Db(err)
    }

    /// A sentence for the person who reads a failed job's reason: what PostgreSQL said and
    /// what to do about it (disk full, statement timeout, restart, read-only, privileges).
    /// Other errors read as `database: <error>`.
    pub fn operator_message(&self) -> String {
        crate::trouble::explain(self).unwrap_or_else(|| format!("database: {self}"))
    }

    /// True for errors that mean the database could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_))
        )
    }
}
