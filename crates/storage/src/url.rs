//! Database URLs: which backend a URL names (by its scheme, never by trying to connect), and a
//! form of it that is safe to print.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Result, StoreError};

/// The database behind a [`Store`](crate::Store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file (`sqlite://PATH`).
    Sqlite,
    /// A PostgreSQL server (`postgres://...` or `postgresql://...`).
    Postgres,
}

/// A parsed database URL. Its `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum DbUrl {
    /// `sqlite://PATH`: the file path (relative to the working directory unless absolute).
    Sqlite(PathBuf),
    /// The URL as given, handed to libpq.
    Postgres(String),
}

impl DbUrl {
    /// Chooses the backend from the scheme.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreError::InvalidUrl {
                    reason: "sqlite:// needs a file path, e.g. sqlite://triggerd.db".into(),
                });
            }
            if path.starts_with(':') {
                return Err(StoreError::InvalidUrl {
                    reason: "in-memory SQLite databases are not supported; give a file path".into(),
                });
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        Err(StoreError::InvalidUrl {
            reason: if scheme.is_empty() {
                "no scheme".into()
            } else {
                format!("unknown scheme {scheme:?}")
            },
        })
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            Self::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DbUrl({self})")
    }
}

/// Returns `url` with any password replaced by `***`: the `user:password@` part and a
/// `password=` query parameter.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_chooses_backend() {
        assert_eq!(
            DbUrl::parse("sqlite://data/t.db").ok(),
            Some(DbUrl::Sqlite(PathBuf::from("data/t.db")))
        );
        assert_eq!(
            DbUrl::parse("sqlite:///var/lib/t.db").ok(),
            Some(DbUrl::Sqlite(PathBuf::from("/var/lib/t.db")))
        );
        assert_eq!(
            DbUrl::parse("postgresql://h/db").map(|u| u.backend()).ok(),
            Some(Backend::Postgres)
        );
        assert!(matches!(
            DbUrl::parse("mysql://h/db"),
            Err(StoreError::InvalidUrl { .. })
        ));
        assert!(DbUrl::parse("sqlite::memory:").is_err());
        assert!(DbUrl::parse("sqlite://:memory:").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=s3cret&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        let url = DbUrl::parse("postgres://u:p%40ss@h/db").unwrap_or(DbUrl::Sqlite("x".into()));
        assert!(!format!("{url:?}").contains("p%40ss"));
        assert!(!url.to_string().contains("p%40ss"));
    }
}
