//! Settings: small key → value strings (the admin API token's hash, ...).

use diesel::prelude::*;

use crate::Store;
use crate::conn::per_backend;
use crate::error::Result;
use crate::schema::settings;

impl Store {
    /// The value of a setting, if set.
    pub async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.read(move |c| {
            Ok(settings::table
                .find(key)
                .select(settings::value)
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Sets a setting, replacing any value it had.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(
            move |c| {
                // MultiConnection has no ON CONFLICT: the upsert runs on the inner connection.
                per_backend!(c, c => diesel::insert_into(settings::table)
                    .values((settings::key.eq(&key), settings::value.eq(&value)))
                    .on_conflict(settings::key)
                    .do_update()
                    .set(settings::value.eq(&value))
                    .execute(c))?;
                Ok(())
            },
            |_| false,
        )
        .await
    }
}
