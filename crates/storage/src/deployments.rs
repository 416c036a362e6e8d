//! Deployments: named instances of a workflow, pinned to a version or tracking the latest.

use diesel::prelude::*;

use crate::Store;
use crate::conn::DbConn;
use crate::error::{Result, StoreError};
use crate::schema::{deployments, workflows};
use crate::store::{Page, fetch_limit, page};

/// A deployment.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
// `None` binds NULL instead of DEFAULT: the INSERT text no longer depends on the values, so
// diesel can cache its prepared statement (it re-prepares every INSERT that uses DEFAULT).
#[diesel(table_name = deployments, treat_none_as_default_value = false)]
pub struct DeploymentRow {
    /// `dep_...`, chosen by the caller.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The deployment's name, unique per workflow (`production`, `staging`).
    pub name: String,
    /// The version it runs; `None` = always the latest.
    pub pinned_version: Option<i64>,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// What [`Store::create_deployment`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    /// `dep_...`, chosen by the caller.
    pub id: String,
    /// The workflow's name; must exist.
    pub workflow: String,
    /// Unique per workflow.
    pub name: String,
    /// A version of the workflow, or `None` to track the latest.
    pub pinned_version: Option<i64>,
    /// Microseconds since the epoch.
    pub now: i64,
}

pub(crate) fn create_deployment(c: &mut DbConn, new: NewDeployment) -> Result<DeploymentRow> {
    let latest: Option<i64> = workflows::table
        .find(&new.workflow)
        .select(workflows::latest_version)
        .first(c)
        .optional()?;
    let Some(latest) = latest else {
        return Err(StoreError::not_found(format!("workflow {}", new.workflow)));
    };
    if let Some(v) = new.pinned_version {
        if v < 1 || v > latest {
            return Err(StoreError::not_found(format!(
                "version {v} of workflow {}",
                new.workflow
            )));
        }
    }
    let row = DeploymentRow {
        id: new.id,
        workflow: new.workflow,
        name: new.name,
        pinned_version: new.pinned_version,
        created_at: new.now,
    };
    diesel::insert_into(deployments::table)
        .values(&row)
        .execute(c)
        .map_err(|e| {
            StoreError::on_constraint(
                e,
                &format!(
                    "workflow {} already has a deployment named {} (or id {} is taken)",
                    row.workflow, row.name, row.id
                ),
                &format!("workflow {}", row.workflow),
            )
        })?;
    Ok(row)
}

/// Every deployment of a workflow (a workflow has few), oldest first.
pub(crate) fn deployments_of_workflow(
    c: &mut DbConn,
    workflow: &str,
) -> QueryResult<Vec<DeploymentRow>> {
    deployments::table
        .filter(deployments::workflow.eq(workflow))
        .order(deployments::id.asc())
        .select(DeploymentRow::as_select())
        .load(c)
}

impl Store {
    /// Creates a deployment. `NotFound` when the workflow (or the pinned version) does not
    /// exist, `Conflict` when the workflow already has a deployment of that name (or the id is
    /// taken).
    pub async fn create_deployment(&self, new: NewDeployment) -> Result<DeploymentRow> {
        self.write(move |c| create_deployment(c, new), |_| false)
            .await
    }

    /// A deployment by id.
    pub async fn get_deployment(&self, id: &str) -> Result<Option<DeploymentRow>> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(deployments::table
                .find(id)
                .select(DeploymentRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// A deployment by workflow and name.
    pub async fn get_deployment_by_name(
        &self,
        workflow: &str,
        name: &str,
    ) -> Result<Option<DeploymentRow>> {
        let (workflow, name) = (workflow.to_owned(), name.to_owned());
        self.read(move |c| {
            Ok(deployments::table
                .filter(deployments::workflow.eq(workflow))
                .filter(deployments::name.eq(name))
                .select(DeploymentRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Every deployment of a workflow (a workflow has few), oldest first.
    pub async fn deployments_of_workflow(&self, workflow: &str) -> Result<Vec<DeploymentRow>> {
        let workflow = workflow.to_owned();
        self.read(move |c| Ok(deployments_of_workflow(c, &workflow)?))
            .await
    }

    /// Deployments newest first, starting after `cursor` (an id from a previous page).
    pub async fn list_deployments(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeploymentRow>> {
        let cursor = cursor.map(str::to_owned);
        self.read(move |c| {
            let mut q = deployments::table
                .select(DeploymentRow::as_select())
                .order(deployments::id.desc())
                .limit(fetch_limit(limit))
                .into_boxed();
            if let Some(cursor) = cursor {
                q = q.filter(deployments::id.lt(cursor));
            }
            Ok(page(q.load(c)?, limit, |d| &d.id))
        })
        .await
    }

    /// Deletes a deployment; its triggers and their webhook tokens go with it, so its URLs stop
    /// at once. Its runs and activity stay readable. `NotFound` when there is no such deployment.
    pub async fn delete_deployment(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(
            move |c| {
                if diesel::delete(deployments::table.find(&id)).execute(c)? == 0 {
                    return Err(StoreError::not_found(format!("deployment {id}")));
                }
                Ok(())
            },
            |_| false,
        )
        .await
    }
}
