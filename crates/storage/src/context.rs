//! The deployment context store: string keys to JSON values (stored as text), per deployment.

use diesel::prelude::*;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::schema::{deployment_context, deployments};

fn load(c: &mut crate::conn::DbConn, deployment_id: &str) -> QueryResult<Vec<(String, String)>> {
    deployment_context::table
        .filter(deployment_context::deployment_id.eq(deployment_id))
        .select((deployment_context::key, deployment_context::value))
        .order(deployment_context::key.asc())
        .load(c)
}

impl Store {
    /// Every `(key, JSON text)` of a deployment's context, by key. `NotFound` for an unknown
    /// deployment.
    pub async fn get_context(&self, deployment_id: &str) -> Result<Vec<(String, String)>> {
        let id = deployment_id.to_owned();
        self.read(move |c| {
            let exists: bool =
                diesel::select(diesel::dsl::exists(deployments::table.find(&id))).get_result(c)?;
            if !exists {
                return Err(StoreError::not_found(format!("deployment {id}")));
            }
            Ok(load(c, &id)?)
        })
        .await
    }

    /// Applies changes in one transaction — `Some(json)` sets a key, `None` deletes it — and
    /// returns the whole context after them. `NotFound` for an unknown deployment.
    pub async fn patch_context(
        &self,
        deployment_id: &str,
        changes: Vec<(String, Option<String>)>,
        now: i64,
    ) -> Result<Vec<(String, String)>> {
        let id = deployment_id.to_owned();
        self.write(
            move |c| {
                let exists: bool =
                    diesel::select(diesel::dsl::exists(deployments::table.find(&id)))
                        .get_result(c)?;
                if !exists {
                    return Err(StoreError::not_found(format!("deployment {id}")));
                }
                for (key, value) in changes {
                    // Delete then insert: the same statements on both backends (no upsert
                    // syntax needed), atomic inside the batch's transaction.
                    diesel::delete(deployment_context::table.find((&id, &key))).execute(c)?;
                    if let Some(value) = value {
                        diesel::insert_into(deployment_context::table)
                            .values((
                                deployment_context::deployment_id.eq(&id),
                                deployment_context::key.eq(&key),
                                deployment_context::value.eq(value),
                                deployment_context::updated_at.eq(now),
                            ))
                            .execute(c)?;
                    }
                }
                Ok(load(c, &id)?)
            },
            |_| false,
        )
        .await
    }
}
