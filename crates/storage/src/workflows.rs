//! Workflows and their versions.

use diesel::prelude::*;

use crate::Store;
use crate::conn::DbConn;
use crate::error::{Result, StoreError};
use crate::schema::{deployments, workflow_versions, workflows};
use crate::store::{Page, fetch_limit, page};

/// A workflow: its name and the number of its latest version.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = workflows)]
pub struct WorkflowRow {
    /// The workflow's name (unique).
    pub name: String,
    /// The newest version; versions count from 1.
    pub latest_version: i64,
    /// Microseconds since the epoch.
    pub created_at: i64,
    /// When the latest version was added, microseconds since the epoch.
    pub updated_at: i64,
}

/// One version of a workflow's definition.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = workflow_versions)]
pub struct WorkflowVersionRow {
    /// The workflow's name.
    pub workflow: String,
    /// The version number, from 1.
    pub version: i64,
    /// The definition as canonical JSON text.
    pub definition: String,
    /// Microseconds since the epoch.
    pub created_at: i64,
}

/// The latest version of `name`, on the connection given.
pub(crate) fn latest_version(
    c: &mut DbConn,
    name: &str,
) -> QueryResult<Option<WorkflowVersionRow>> {
    workflow_versions::table
        .inner_join(
            workflows::table.on(workflows::name
                .eq(workflow_versions::workflow)
                .and(workflows::latest_version.eq(workflow_versions::version))),
        )
        .filter(workflows::name.eq(name))
        .select(WorkflowVersionRow::as_select())
        .first(c)
        .optional()
}

pub(crate) fn put_workflow(
    c: &mut DbConn,
    name: &str,
    definition: &str,
    now: i64,
) -> Result<(WorkflowVersionRow, bool)> {
    let latest = latest_version(c, name)?;
    let version = match &latest {
        Some(l) if l.definition == definition => return Ok((l.clone(), false)),
        Some(l) => l.version + 1,
        None => 1,
    };
    let row = WorkflowVersionRow {
        workflow: name.to_owned(),
        version,
        definition: definition.to_owned(),
        created_at: now,
    };
    let concurrent = |e| {
        StoreError::on_constraint(
            e,
            &format!("workflow {name} was changed concurrently; retry"),
            &format!("workflow {name}"),
        )
    };
    if latest.is_none() {
        diesel::insert_into(workflows::table)
            .values(WorkflowRow {
                name: name.to_owned(),
                latest_version: version,
                created_at: now,
                updated_at: now,
            })
            .execute(c)
            .map_err(concurrent)?;
    } else {
        diesel::update(workflows::table.find(name))
            .set((
                workflows::latest_version.eq(version),
                workflows::updated_at.eq(now),
            ))
            .execute(c)?;
    }
    diesel::insert_into(workflow_versions::table)
        .values(&row)
        .execute(c)
        .map_err(concurrent)?;
    Ok((row, true))
}

impl Store {
    /// Creates the workflow, or adds a version to it. When `definition_json` equals the latest
    /// version's text, nothing is written and the latest version is returned with
    /// `created = false`.
    ///
    /// Two nodes adding a version of the same workflow at the same instant: one of them gets
    /// `Conflict` and may retry.
    pub async fn put_workflow(
        &self,
        name: &str,
        definition_json: &str,
        now: i64,
    ) -> Result<(WorkflowVersionRow, bool)> {
        let (name, definition) = (name.to_owned(), definition_json.to_owned());
        self.write(move |c| put_workflow(c, &name, &definition, now), |_| false)
            .await
    }

    /// The workflow and its latest version.
    pub async fn get_workflow(
        &self,
        name: &str,
    ) -> Result<Option<(WorkflowRow, WorkflowVersionRow)>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(workflows::table
                .inner_join(
                    workflow_versions::table.on(workflow_versions::workflow
                        .eq(workflows::name)
                        .and(workflow_versions::version.eq(workflows::latest_version))),
                )
                .filter(workflows::name.eq(&name))
                .select((WorkflowRow::as_select(), WorkflowVersionRow::as_select()))
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Versions of a workflow, newest first, starting below `before` (a version number);
    /// `NotFound` for an unknown workflow.
    pub async fn list_workflow_versions(
        &self,
        name: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<WorkflowVersionRow>, Option<i64>)> {
        let name = name.to_owned();
        self.read(move |c| {
            let exists: bool =
                diesel::select(diesel::dsl::exists(workflows::table.find(&name))).get_result(c)?;
            if !exists {
                return Err(StoreError::not_found(format!("workflow {name}")));
            }
            let mut query = workflow_versions::table
                .filter(workflow_versions::workflow.eq(&name))
                .select(WorkflowVersionRow::as_select())
                .order(workflow_versions::version.desc())
                .limit(limit as i64 + 1)
                .into_boxed();
            if let Some(before) = before {
                query = query.filter(workflow_versions::version.lt(before));
            }
            let mut rows: Vec<WorkflowVersionRow> = query.load(c)?;
            let next = if rows.len() > limit {
                rows.truncate(limit);
                rows.last().map(|r| r.version)
            } else {
                None
            };
            Ok((rows, next))
        })
        .await
    }

    /// One version of a workflow.
    pub async fn get_workflow_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<WorkflowVersionRow>> {
        let name = name.to_owned();
        self.read(move |c| {
            Ok(workflow_versions::table
                .find((name, version))
                .select(WorkflowVersionRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    /// Workflows by name, ascending, starting after `after_cursor` (a name).
    pub async fn list_workflows(
        &self,
        after_cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<WorkflowRow>> {
        let after = after_cursor.map(str::to_owned);
        self.read(move |c| {
            let mut q = workflows::table
                .select(WorkflowRow::as_select())
                .order(workflows::name.asc())
                .limit(fetch_limit(limit))
                .into_boxed();
            if let Some(after) = after {
                q = q.filter(workflows::name.gt(after));
            }
            Ok(page(q.load(c)?, limit, |w| &w.name))
        })
        .await
    }

    /// Deletes a workflow and all its versions. `Conflict` while any deployment of it exists,
    /// `NotFound` when there is no such workflow.
    pub async fn delete_workflow(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(
            move |c| {
                let deployed: i64 = deployments::table
                    .filter(deployments::workflow.eq(&name))
                    .count()
                    .get_result(c)?;
                if deployed > 0 {
                    return Err(StoreError::conflict(format!(
                        "workflow {name} still has {deployed} deployment(s); delete them first"
                    )));
                }
                // The versions go with it (ON DELETE CASCADE); a deployment created meanwhile by
                // another node makes the foreign key refuse the delete.
                let deleted = diesel::delete(workflows::table.find(&name))
                    .execute(c)
                    .map_err(|e| match e {
                        diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                            _,
                        ) => StoreError::conflict(format!("workflow {name} is deployed")),
                        e => StoreError::from_diesel(e),
                    })?;
                if deleted == 0 {
                    return Err(StoreError::not_found(format!("workflow {name}")));
                }
                // Its workflow-scoped hooks go too (a new workflow of that name starts without).
                diesel::delete(
                    crate::schema::hooks::table
                        .filter(crate::schema::hooks::scope.eq("workflow"))
                        .filter(crate::schema::hooks::workflow.eq(&name)),
                )
                .execute(c)?;
                Ok(())
            },
            |_| false,
        )
        .await
    }
}
