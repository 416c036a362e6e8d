//! A fresh PostgreSQL database per scenario, created and dropped with `psql` (the client the
//! project's CI and README set-up already have): the tool needs two statements, not a driver.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A database created for one scenario, dropped (with `FORCE`) when this is dropped.
#[derive(Debug)]
pub struct PgDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `triggerd_bench_<pid>_<n>` on the server of `server_url` (any database URL on it;
    /// the statement runs in that database).
    pub fn create(server_url: &str) -> Result<PgDatabase, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "triggerd_bench_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(server_url, &name).ok_or_else(|| {
            Error::new("the PostgreSQL URL must look like postgres://USER@HOST[:PORT]/DB")
        })?;
        psql(server_url, &format!("CREATE DATABASE {name}"))?;
        Ok(PgDatabase {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    /// The database's URL, for `TRIGGERD_DATABASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.server_url, &sql) {
            eprintln!("triggerd-bench: could not drop database {}: {e}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<(), Error> {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-qXc", sql])
        .output()
        .map_err(|e| {
            Error::new(format!(
                "cannot run psql (is the PostgreSQL client installed?): {e}"
            ))
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "psql `{sql}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// `url` with its database (the path) replaced by `name`, query parameters kept.
pub fn with_database(url: &str, name: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let (head, rest) = url.split_at(scheme_end);
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return None;
    }
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    Some(format!("{head}{authority}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "b1").as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/b1")
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "b2").as_deref(),
            Some("postgresql://u:p@h/b2?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h:5432", "b3").as_deref(),
            Some("postgres://h:5432/b3")
        );
        assert_eq!(with_database("not a url", "x"), None);
    }
}
