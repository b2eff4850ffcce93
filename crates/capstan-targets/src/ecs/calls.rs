//! The AWS calls of the ECS target, batched to AWS's limits, with their errors turned
//! into [`TargetError::Failed`] naming the target and the operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use capstan_aws_api::limits::{
    DESCRIBE_CONTAINER_INSTANCES, DESCRIBE_TASKS, GET_TASK_PROTECTION, UPDATE_TASK_PROTECTION,
};
use capstan_aws_api::{AwsError, Ecs, EcsTask};

/// ECS's failure reason for a task that is gone (or was never valid for the call).
pub(super) const TASK_NOT_VALID: &str = "TASK_NOT_VALID";

/// `DescribeTasks` for `arns`, at most [`DESCRIBE_TASKS`] per call. Tasks ECS does not
/// know are left out.
pub(super) async fn describe_tasks<E: Ecs>(
    ecs: &E,
    cluster: &str,
    arns: &[Arc<str>],
) -> Result<Vec<EcsTask>, AwsError> {
    let mut batches = arns.chunks(DESCRIBE_TASKS);
    let Some(first) = batches.next() else {
        return Ok(Vec::new());
    };
    // The first batch's answer is kept as it is (most services fit in one batch).
    let (mut tasks, _missing) = ecs.describe_tasks(cluster, first).await?;
    for batch in batches {
        let (found, _missing) = ecs.describe_tasks(cluster, batch).await?;
        tasks.extend(found);
    }
    Ok(tasks)
}

/// The EC2 instance id behind each of the container instances `arns`
/// (`DescribeContainerInstances`, at most [`DESCRIBE_CONTAINER_INSTANCES`] per call),
/// by container instance ARN (as `DescribeTasks` names them). Container instances ECS
/// does not know are left out.
pub(super) async fn ec2_instance_ids<E: Ecs>(
    ecs: &E,
    cluster: &str,
    arns: &[String],
) -> Result<HashMap<String, String>, AwsError> {
    let mut ids = HashMap::with_capacity(arns.len());
    for batch in arns.chunks(DESCRIBE_CONTAINER_INSTANCES) {
        let (found, _missing) = ecs.describe_container_instances(cluster, batch).await?;
        ids.extend(found.into_iter().map(|ci| (ci.arn, ci.ec2_instance_id)));
    }
    Ok(ids)
}

/// `GetTaskProtection` for `arns`, at most [`GET_TASK_PROTECTION`] per call: which of
/// them are protected. A task ECS reports as a failure (gone) counts as unprotected.
pub(super) async fn protected_tasks<E: Ecs>(
    ecs: &E,
    cluster: &str,
    arns: &[Arc<str>],
) -> Result<BTreeSet<Arc<str>>, AwsError> {
    let mut protected = BTreeSet::new();
    for batch in arns.chunks(GET_TASK_PROTECTION) {
        let result = ecs.get_task_protection(cluster, batch).await?;
        protected.extend(
            result
                .protected
                .into_iter()
                .filter(|p| p.enabled)
                .map(|p| p.arn),
        );
    }
    Ok(protected)
}

/// What one round of `UpdateTaskProtection` calls did.
#[derive(Debug, Default)]
pub(super) struct ProtectionOutcome {
    /// Tasks whose protection was changed as asked.
    pub done: Vec<Arc<str>>,
    /// Tasks ECS reported as `TASK_NOT_VALID`: gone, nothing to do.
    pub gone: Vec<Arc<str>>,
    /// The first error met: an AWS error or a failure other than `TASK_NOT_VALID`.
    /// Batches after it were not sent.
    pub error: Option<String>,
}

/// `UpdateTaskProtection` for `arns`, at most [`UPDATE_TASK_PROTECTION`] per call:
/// `Some(minutes)` protects, `None` releases. Stops at the first batch that fails.
pub(super) async fn update_protection<E: Ecs>(
    ecs: &E,
    cluster: &str,
    arns: &[Arc<str>],
    minutes: Option<u32>,
) -> ProtectionOutcome {
    let mut outcome = ProtectionOutcome::default();
    for batch in arns.chunks(UPDATE_TASK_PROTECTION) {
        let result = match ecs.update_task_protection(cluster, batch, minutes).await {
            Ok(result) => result,
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        };
        let failures: BTreeMap<&str, &str> = result
            .failures
            .iter()
            .map(|f| (&*f.arn, f.reason.as_str()))
            .collect();
        for arn in batch {
            match failures.get(&**arn) {
                None => outcome.done.push(arn.clone()),
                Some(&TASK_NOT_VALID) => outcome.gone.push(arn.clone()),
                Some(reason) => {
                    outcome.error.get_or_insert_with(|| {
                        format!("UpdateTaskProtection: task {arn}: {reason}")
                    });
                }
            }
        }
        if outcome.error.is_some() {
            return outcome;
        }
    }
    outcome
}
