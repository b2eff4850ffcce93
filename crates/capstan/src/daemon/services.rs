//! The running services: one control-loop task per service, started, reconfigured in
//! place and stopped as the configuration changes.
//!
//! Each service's task drives its [`ServiceLoop`]: a tick every interval, and one at
//! once when the service is woken ([`Wakers`]: a read of a source its policies use, or
//! an alert). A reconfiguration (new policies, bounds, planner settings or interval)
//! reaches the task over a watch channel and is applied between ticks with
//! [`ServiceLoop::reconfigure`], keeping cooldowns and stabilization. A new target
//! means a new loop: the old one is stopped and its target shut down.
//!
//! Targets are kept here as [`AnyTarget`] clones so they can be shut down when their
//! service is removed or capstan stops.
//!
//! What each kind of target gets: an `ecs` target gets the work registry's counts of
//! its tasks, the scale-in workflow journal (durable workflows, redrive) and, with
//! `protection`, a place in its cluster's task-protection driver; a process target
//! gets the work registry's counts. An `ec2_cluster` target (the hosts of a cluster)
//! gets the workflow journal for its host removals (durable, redrive; each observation
//! runs their due steps) and the live work of every service's tasks (a host running a
//! task with live work is never removed), but is not declared in the work registry
//! itself (its "tasks" are hosts: reports to it are refused) and protects no task. It
//! does not scale while a host rotation moves hosts from or to its group
//! ([`super::rotations`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use capstan_aws_api::{AutoScaling, Ecs, Elb};
use capstan_aws_sdk::{AwsSettings, SdkAutoScaling, SdkEcs, SdkElb, SharedConfig};
use capstan_control::registry::Registry;
use capstan_control::{ServiceLoop, WorkRegistry};
use capstan_core::clock::Clock;
use capstan_core::decision::Action;
use capstan_core::metrics::SharedObservations;
use capstan_core::model::TaskId;
use capstan_core::planner::Engine;
use capstan_core::victim::VictimPolicy;
use capstan_sources::retry::Backoff;
use capstan_sources::{ReadError, ReadObserver};
use capstan_store::DecisionLog;
use capstan_targets::spec::Ec2ClusterSpec;
use capstan_targets::{
    AsgTarget, EcsServiceSpec, EcsTarget, EcsTargetSpec, Observed, ProcessTarget, Target,
    TargetError, TargetSpec, WorkCounts,
};
use capstan_world::World;
use tokio::sync::{Notify, watch};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::protection::ProtectionDrivers;
use crate::config::ServiceSpec;

/// Any target the daemon can run.
#[derive(Clone)]
pub enum AnyTarget {
    /// Local processes.
    Process(ProcessTarget),
    /// An ECS service on AWS, through the AWS SDK (`kind = "ecs"`).
    Ecs(Arc<EcsTarget<SdkEcs, SdkElb>>),
    /// The EC2 hosts of an ECS cluster on AWS, its Auto Scaling group's instances,
    /// through the AWS SDK (`kind = "ec2_cluster"`).
    Ec2Cluster(Arc<AsgTarget<SdkEcs, SdkAutoScaling>>),
    /// An ECS service of the simulator's world model (behaviour tests run the daemon
    /// against it through [`super::RunOptions::targets`]; no configuration builds it).
    EcsWorld(Arc<EcsTarget<World, World>>),
    /// The EC2 hosts of a cluster of the simulator's world model (behaviour tests; no
    /// configuration builds it).
    Ec2ClusterWorld(Arc<AsgTarget<World, World>>),
}

/// How long one AWS call of a target may take, retries excluded: a hung call fails the
/// tick (retried with backoff) instead of stalling the service's loop.
pub const AWS_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The SDK clients of the `ecs` and `ec2_cluster` targets, one set per set of AWS
/// settings (region, endpoint, profile), made from one [`SharedConfig`] and shared by
/// every service using them: a thousand services in one account share one connection
/// pool and one credential cache, and their ECS calls one set of throttling buckets.
#[derive(Default)]
pub struct AwsClients {
    clients: std::sync::Mutex<HashMap<AwsSettings, Clients>>,
}

/// The clients of one set of AWS settings (each made on its first call).
#[derive(Clone)]
struct Clients {
    ecs: SdkEcs,
    elb: SdkElb,
    autoscaling: SdkAutoScaling,
}

impl AwsClients {
    /// The clients for `settings`, made on first use.
    fn clients(&self, settings: AwsSettings) -> Clients {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(settings)
            .or_insert_with_key(|settings| {
                let config = SharedConfig::new(settings.clone());
                Clients {
                    ecs: SdkEcs::new(config.clone()),
                    elb: SdkElb::new(config.clone()),
                    autoscaling: SdkAutoScaling::new(config),
                }
            })
            .clone()
    }

    /// The ECS and ELB clients for `settings` (an `ecs` target), made on first use.
    pub fn get(&self, settings: AwsSettings) -> (SdkEcs, SdkElb) {
        let c = self.clients(settings);
        (c.ecs, c.elb)
    }

    /// The ECS and Auto Scaling clients for `settings` (an `ec2_cluster` target), made
    /// on first use.
    pub fn hosts(&self, settings: AwsSettings) -> (SdkEcs, SdkAutoScaling) {
        let c = self.clients(settings);
        (c.ecs, c.autoscaling)
    }
}

/// The SDK settings of a target with these connection keys: connections time out after
/// 5 s, each call after [`AWS_CALL_TIMEOUT`].
pub(crate) fn aws_settings(
    region: Option<&String>,
    endpoint_url: Option<&String>,
    profile: Option<&String>,
) -> AwsSettings {
    AwsSettings {
        region: region.cloned(),
        endpoint_url: endpoint_url.cloned(),
        profile: profile.cloned(),
        connect_timeout: Some(Duration::from_secs(5)),
        operation_timeout: Some(AWS_CALL_TIMEOUT),
    }
}

/// Whether the service's tasks report their work to the work registry: not for an
/// `ec2_cluster` target, whose "tasks" are hosts.
fn uses_work_registry(spec: &ServiceSpec) -> bool {
    !matches!(spec.target, TargetSpec::Ec2Cluster(_))
}

/// Builds the target of a service instead of its configured one when it returns
/// `Some`: the target, or why it cannot be built (tests put the world model behind ECS
/// services this way).
/// It is given the live work of the service's tasks (the work registry's), for the
/// target's drain-then-stop scale-in.
pub type TargetFactory =
    Arc<dyn Fn(&ServiceSpec, TargetParts) -> Option<Result<AnyTarget, TargetError>> + Send + Sync>;

/// What the daemon gives a target it builds: the tasks' live work and where scale-in
/// workflows are journaled.
#[derive(Clone, Default)]
pub struct TargetParts {
    /// The work registry's counts for the service.
    pub work: Option<Arc<dyn WorkCounts>>,
    /// The scale-in workflows' journal.
    pub journal: Option<Arc<dyn capstan_targets::ecs::durable::Journal>>,
}

/// A factory putting every `ecs` and `ec2_cluster` service on the world model as
/// configured: an `ecs` service on the model's service of its configured cluster and
/// name, with its target group, drain timeout, task protection and workflow timings;
/// an `ec2_cluster` service on the model's cluster and Auto Scaling group, with its
/// host removal workflows. Both on `clock` (the world's), their workflows in the
/// daemon's journal. Other kinds are built as configured. The recipes' end-to-end tests
/// run their shipped configurations this way.
pub fn world_targets_as_configured(world: World, clock: Arc<dyn Clock>) -> TargetFactory {
    Arc::new(
        move |spec: &ServiceSpec, parts: TargetParts| match &spec.target {
            TargetSpec::Ecs(ecs) => {
                let target = EcsTarget::new(
                    &spec.name,
                    ecs.target.clone(),
                    world.clone(),
                    Some(world.clone()),
                    parts.work,
                )
                .with_clock(Arc::clone(&clock));
                Some(
                    configure_ecs(&spec.name, ecs, target, parts.journal)
                        .map(|t| AnyTarget::EcsWorld(Arc::new(t))),
                )
            }
            TargetSpec::Ec2Cluster(hosts) => {
                let target = AsgTarget::new(
                    &spec.name,
                    hosts.target.clone(),
                    world.clone(),
                    world.clone(),
                )
                .with_clock(Arc::clone(&clock));
                Some(
                    configure_hosts(&spec.name, hosts, target, parts.work, parts.journal)
                        .map(|t| AnyTarget::Ec2ClusterWorld(Arc::new(t))),
                )
            }
            TargetSpec::Process(_) | TargetSpec::Simulated(_) => None,
        },
    )
}

/// A factory putting every service on the world model's ECS service of the same name
/// in `cluster` (no target group configured; the work registry's counts; durable
/// scale-in workflows when the daemon keeps a journal), on the system clock.
pub fn world_targets(world: World, cluster: &str) -> TargetFactory {
    let cluster = cluster.to_owned();
    Arc::new(move |spec: &ServiceSpec, parts: TargetParts| {
        let mut target = EcsTarget::new(
            &spec.name,
            EcsTargetSpec::new(&cluster, &spec.name),
            world.clone(),
            Some(world.clone()),
            parts.work,
        );
        if let Some(journal) = parts.journal {
            // Quick drain checks: the world model runs on the system clock here.
            let settings = capstan_core::workflow::WorkflowSettings {
                first_check_after: Duration::from_millis(500),
                check_every: Duration::from_millis(200),
                ..capstan_core::workflow::WorkflowSettings::default()
            };
            target = match target.with_workflows(journal, settings) {
                Ok(target) => target,
                Err(reason) => return Some(Err(unreadable_workflows(&spec.name, reason))),
            };
        }
        Some(Ok(AnyTarget::EcsWorld(Arc::new(target))))
    })
}

/// `target` (an `ecs` service's, on any ECS and ELB) as `spec` configures it: checked,
/// its scale-in workflows journaled in `journal` with the configured timings, its task
/// protection. The daemon's targets and the world model's are built the same way.
fn configure_ecs<E: Ecs + Clone, L: Elb>(
    service: &str,
    spec: &EcsServiceSpec,
    mut target: EcsTarget<E, L>,
    journal: Option<Arc<dyn capstan_targets::ecs::durable::Journal>>,
) -> Result<EcsTarget<E, L>, TargetError> {
    spec.target
        .validate()
        .map_err(|reason| TargetError::Invalid {
            target: service.to_owned(),
            reason,
        })?;
    if let Some(journal) = journal {
        let settings = capstan_core::workflow::WorkflowSettings {
            first_check_after: spec.first_check_after,
            check_every: spec.check_every,
            drain_timeout: spec.target.drain_timeout,
            cut_after: spec.drain_deadline,
            ..capstan_core::workflow::WorkflowSettings::default()
        };
        target = target
            .with_workflows(journal, settings)
            .map_err(|reason| unreadable_workflows(service, reason))?;
    }
    if let Some(settings) = spec.protection {
        target = target
            .with_protection(settings)
            .map_err(|reason| TargetError::Invalid {
                target: service.to_owned(),
                reason: format!("protection: {reason}"),
            })?;
    }
    Ok(target)
}

/// `target` (an `ec2_cluster` service's) as `spec` configures it: checked, reading the
/// live work of every task on its hosts, its host removals journaled in `journal`.
fn configure_hosts<E: Ecs, A: AutoScaling>(
    service: &str,
    spec: &Ec2ClusterSpec,
    mut target: AsgTarget<E, A>,
    work: Option<Arc<dyn WorkCounts>>,
    journal: Option<Arc<dyn capstan_targets::ecs::durable::Journal>>,
) -> Result<AsgTarget<E, A>, TargetError> {
    spec.target
        .validate()
        .map_err(|reason| TargetError::Invalid {
            target: service.to_owned(),
            reason,
        })?;
    if let Some(work) = work {
        target = target.with_work(work);
    }
    if let Some(journal) = journal {
        target = target
            .with_workflows(journal, capstan_core::workflow::WorkflowSettings::default())
            .map_err(|reason| TargetError::Failed {
                target: service.to_owned(),
                reason: format!("cannot read its host removal workflows: {reason}"),
            })?;
    }
    Ok(target)
}

/// The error of a target whose journaled scale-in workflows cannot be read.
fn unreadable_workflows(service: &str, reason: String) -> TargetError {
    TargetError::Failed {
        target: service.to_owned(),
        reason: format!("cannot read its scale-in workflows: {reason}"),
    }
}

impl AnyTarget {
    /// Builds the target `spec` of `service`, on `clock`, with AWS clients from `aws`;
    /// `work` gives its tasks' live work (scale-in drains victims until idle).
    pub fn build(
        service: &str,
        spec: &TargetSpec,
        clock: &Arc<dyn Clock>,
        aws: &AwsClients,
        work: Option<Arc<dyn WorkCounts>>,
        journal: Option<Arc<dyn capstan_targets::ecs::durable::Journal>>,
    ) -> Result<Self, TargetError> {
        match spec {
            TargetSpec::Ecs(spec) => {
                let (ecs, elb) = aws.get(aws_settings(
                    spec.region.as_ref(),
                    spec.endpoint_url.as_ref(),
                    spec.profile.as_ref(),
                ));
                let target = EcsTarget::new(service, spec.target.clone(), ecs, Some(elb), work)
                    .with_clock(Arc::clone(clock));
                configure_ecs(service, spec, target, journal).map(|t| Self::Ecs(Arc::new(t)))
            }
            // The journal, but no work counts or task protection: see the module docs.
            TargetSpec::Ec2Cluster(spec) => {
                let (ecs, autoscaling) = aws.hosts(aws_settings(
                    spec.region.as_ref(),
                    spec.endpoint_url.as_ref(),
                    spec.profile.as_ref(),
                ));
                let target = AsgTarget::new(service, spec.target.clone(), ecs, autoscaling)
                    .with_clock(Arc::clone(clock));
                configure_hosts(service, spec, target, work, journal)
                    .map(|t| Self::Ec2Cluster(Arc::new(t)))
            }
            TargetSpec::Process(spec) => Ok(Self::Process(ProcessTarget::with_work(
                service,
                spec.clone(),
                Arc::clone(clock),
                work,
            )?)),
            TargetSpec::Simulated(_) => Err(TargetError::Invalid {
                target: service.to_owned(),
                reason: "the simulated target only runs inside `capstan simulate`".into(),
            }),
        }
    }
}

impl AnyTarget {
    /// Resumes the failed scale-in workflow `id` of this target.
    pub async fn redrive(&self, id: &str) -> Result<capstan_core::workflow::Workflow, TargetError> {
        match self {
            Self::Ecs(t) => t.redrive(id).await,
            Self::EcsWorld(t) => t.redrive(id).await,
            Self::Process(t) => Err(TargetError::Invalid {
                target: t.name().to_owned(),
                reason: "a process target runs no durable workflows".into(),
            }),
            Self::Ec2Cluster(t) => t.redrive(id).await,
            Self::Ec2ClusterWorld(t) => t.redrive(id).await,
        }
    }
}

/// What the API shows of an `ec2_cluster` target's hosts.
#[derive(Debug, Clone)]
pub struct HostsReport {
    /// The ECS cluster.
    pub cluster: String,
    /// The latest observation's hosts; `None` before the first one.
    pub view: Option<Arc<capstan_targets::asg::HostsView>>,
    /// The host removal in progress (running or failed), if any.
    pub removal: Option<capstan_targets::asg::RemovalProgress>,
}

impl AnyTarget {
    /// The hosts and the removal in progress of an `ec2_cluster` target; `None` for
    /// any other kind.
    pub async fn hosts(&self) -> Option<HostsReport> {
        match self {
            Self::Ec2Cluster(t) => Some(HostsReport {
                cluster: t.spec().cluster.clone(),
                view: t.hosts_view(),
                removal: t.removal_in_progress().await,
            }),
            Self::Ec2ClusterWorld(t) => Some(HostsReport {
                cluster: t.spec().cluster.clone(),
                view: t.hosts_view(),
                removal: t.removal_in_progress().await,
            }),
            Self::Process(_) | Self::Ecs(_) | Self::EcsWorld(_) => None,
        }
    }
}

/// Resumes a failed workflow: (service, workflow id) → the workflow as resumed.
pub type Redriver = Arc<
    dyn Fn(
            String,
            String,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<capstan_core::workflow::Workflow, String>>
                    + Send,
            >,
        > + Send
        + Sync,
>;

/// The targets of the running services, by name (for the workflow API).
pub type TargetBoard = Arc<std::sync::Mutex<BTreeMap<String, AnyTarget>>>;

/// A [`Redriver`] over the running services' targets.
pub fn redriver(board: TargetBoard) -> Redriver {
    Arc::new(move |service: String, id: String| {
        let target = board
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&service)
            .cloned();
        Box::pin(async move {
            let target = target.ok_or_else(|| format!("service {service} is not running"))?;
            target.redrive(&id).await.map_err(|e| e.to_string())
        })
    })
}

impl AnyTarget {
    /// Drives the target's scale-in workflows between observations (drain checks,
    /// retries) until `cancel`: every [`WORKFLOW_PUMP`] at most, sooner when a step is
    /// due, making no call while no workflow is due.
    pub fn spawn_workflow_pump(&self, cancel: CancellationToken) {
        async fn pump<E: capstan_aws_api::Ecs, L: capstan_aws_api::Elb>(
            t: Arc<EcsTarget<E, L>>,
            cancel: CancellationToken,
        ) {
            loop {
                let wait = match t.advance_workflow().await {
                    Ok(Some(at)) => capstan_core::clock::elapsed(Clock::now(&capstan_core::clock::SystemClock), at),
                    Ok(None) => WORKFLOW_PUMP,
                    Err(e) => {
                        tracing::debug!(error = %e, "workflow step failed; the workflow retries it");
                        WORKFLOW_PUMP
                    }
                }
                .clamp(Duration::from_millis(20), WORKFLOW_PUMP);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        match self {
            Self::Ecs(t) if t.workflow_capable() => {
                tokio::spawn(pump(Arc::clone(t), cancel));
            }
            Self::EcsWorld(t) if t.workflow_capable() => {
                tokio::spawn(pump(Arc::clone(t), cancel));
            }
            _ => {}
        }
    }
}

/// How often a scale-in workflow is checked for due steps at most.
pub const WORKFLOW_PUMP: Duration = Duration::from_secs(1);

/// Reads a task-protection loop's counters.
pub type ProtectionStatsFn =
    Arc<dyn Fn() -> capstan_core::protection::ProtectionStats + Send + Sync>;

/// Refuses to scale the hosts of a group a host rotation is moving hosts from or to
/// (see [`super::rotations`]): the refusal names the rotation.
fn hold<E: capstan_aws_api::Ecs, A: capstan_aws_api::AutoScaling>(
    t: &AsgTarget<E, A>,
) -> Result<(), TargetError> {
    match super::rotations::held(&t.spec().cluster, &t.spec().group) {
        Some(why) => Err(TargetError::Failed {
            target: t.name().to_owned(),
            reason: why,
        }),
        None => Ok(()),
    }
}

impl Target for AnyTarget {
    fn name(&self) -> &str {
        match self {
            Self::Process(t) => t.name(),
            Self::Ecs(t) => t.name(),
            Self::Ec2Cluster(t) => t.name(),
            Self::Ec2ClusterWorld(t) => t.name(),
            Self::EcsWorld(t) => t.name(),
        }
    }

    async fn observe(&self) -> Result<Observed, TargetError> {
        match self {
            Self::Process(t) => t.observe().await,
            Self::Ecs(t) => t.observe().await,
            Self::Ec2Cluster(t) => t.observe().await,
            Self::Ec2ClusterWorld(t) => t.observe().await,
            Self::EcsWorld(t) => t.observe().await,
        }
    }

    async fn scale_out(&self, desired: u32) -> Result<(), TargetError> {
        match self {
            Self::Process(t) => t.scale_out(desired).await,
            Self::Ecs(t) => t.scale_out(desired).await,
            Self::Ec2Cluster(t) => {
                hold(t)?;
                t.scale_out(desired).await
            }
            Self::Ec2ClusterWorld(t) => {
                hold(t)?;
                t.scale_out(desired).await
            }
            Self::EcsWorld(t) => t.scale_out(desired).await,
        }
    }

    async fn scale_in(&self, desired: u32, victims: &[TaskId]) -> Result<(), TargetError> {
        match self {
            Self::Process(t) => t.scale_in(desired, victims).await,
            Self::Ecs(t) => t.scale_in(desired, victims).await,
            Self::Ec2Cluster(t) => {
                hold(t)?;
                t.scale_in(desired, victims).await
            }
            Self::Ec2ClusterWorld(t) => {
                hold(t)?;
                t.scale_in(desired, victims).await
            }
            Self::EcsWorld(t) => t.scale_in(desired, victims).await,
        }
    }

    async fn shutdown(&self) {
        match self {
            Self::Process(t) => t.shutdown().await,
            Self::Ecs(t) => t.shutdown().await,
            Self::Ec2Cluster(t) => t.shutdown().await,
            Self::Ec2ClusterWorld(t) => t.shutdown().await,
            Self::EcsWorld(t) => t.shutdown().await,
        }
    }
}

/// What a service's task is told between ticks.
#[derive(Debug, Clone)]
struct Settings {
    engine: Engine,
    interval: Duration,
    victims: VictimPolicy,
}

/// One running service.
struct Running {
    /// The loop task's id.
    id: Id,
    spec: ServiceSpec,
    target: AnyTarget,
    cancel: CancellationToken,
    settings: watch::Sender<Settings>,
}

/// How a service's configuration differs from the one running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Identical.
    None,
    /// Policies, planner settings or interval: applied in place.
    Settings,
    /// Another target: the loop is restarted (its engine state rebuilt from the store,
    /// as at start-up).
    Target,
}

/// Wakes services to evaluate at once: by name (the webhooks, after an alert), and by
/// source (as a [`ReadObserver`] of the pollers: every read of a source a service's
/// policies use, so a change reaches the decision without waiting for the service's
/// next interval).
#[derive(Default)]
pub struct Wakers {
    inner: RwLock<WakerMaps>,
}

#[derive(Default)]
struct WakerMaps {
    /// Each service's waker and the sources it reads.
    by_service: HashMap<String, (Arc<Notify>, Vec<String>)>,
    /// The wakers of the services reading each source.
    by_source: HashMap<String, Vec<Arc<Notify>>>,
}

impl Wakers {
    /// Wakes service `name`; false if there is no such service.
    pub fn wake(&self, name: &str) -> bool {
        let maps = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        maps.by_service.get(name).is_some_and(|(notify, _)| {
            notify.notify_one();
            true
        })
    }

    /// Registers (or replaces) service `name`'s waker, woken by reads of `sources`.
    fn set(&self, name: &str, notify: Arc<Notify>, sources: Vec<String>) {
        let mut maps = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        maps.unlink(name);
        for source in &sources {
            maps.by_source
                .entry(source.clone())
                .or_default()
                .push(Arc::clone(&notify));
        }
        maps.by_service.insert(name.to_owned(), (notify, sources));
    }

    /// Service `name` reads `sources` now (a reload changed its policies).
    fn set_sources(&self, name: &str, sources: Vec<String>) {
        let notify = {
            let maps = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            maps.by_service.get(name).map(|(n, _)| Arc::clone(n))
        };
        if let Some(notify) = notify {
            self.set(name, notify, sources);
        }
    }

    /// Forgets service `name`.
    fn remove(&self, name: &str) {
        let mut maps = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        maps.unlink(name);
    }
}

impl WakerMaps {
    /// Removes service `name` from both maps.
    fn unlink(&mut self, name: &str) {
        let Some((notify, sources)) = self.by_service.remove(name) else {
            return;
        };
        for source in sources {
            if let Some(list) = self.by_source.get_mut(&source) {
                list.retain(|n| !Arc::ptr_eq(n, &notify));
                if list.is_empty() {
                    self.by_source.remove(&source);
                }
            }
        }
    }
}

impl ReadObserver for Wakers {
    fn observed(&self, source: &str, _took: Duration, _result: Result<f64, &ReadError>) {
        let maps = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = maps.by_source.get(source) {
            for notify in list {
                notify.notify_one();
            }
        }
    }
}

/// The sources `engine`'s policies read.
fn sources_of(engine: &Engine) -> Vec<String> {
    let mut sources: Vec<String> = engine
        .policies
        .iter()
        .flat_map(|p| p.policy.sources())
        .map(str::to_owned)
        .collect();
    sources.sort();
    sources.dedup();
    sources
}

/// The running services.
pub struct Services {
    clock: Arc<dyn Clock>,
    obs: SharedObservations,
    log: Arc<dyn DecisionLog>,
    /// Fires when capstan stops: every loop's token is a child of it.
    stop: CancellationToken,
    running: BTreeMap<String, Running>,
    loops: JoinSet<ServiceLoop<AnyTarget, Arc<dyn Clock>>>,
    /// Which service each loop task runs.
    names: HashMap<Id, String>,
    /// Target shutdowns in progress (services removed while running).
    shutdowns: JoinSet<()>,
    /// Targets of loops that have ended (`--once`), shut down by [`Self::stop_all`].
    finished: Vec<AnyTarget>,
    wakers: Arc<Wakers>,
    /// Builds targets instead of their configuration, when it says so.
    factory: Option<TargetFactory>,
    /// Every service's handle shared with the API (controls in, status out).
    registry: Arc<Registry>,
    /// The AWS clients of the `ecs` targets.
    aws: AwsClients,
    /// Where the services' tasks report their live work; `None`: tasks count as idle.
    work: Option<WorkRegistry>,
    /// Where each service's task-protection counters are published (for `/metrics`).
    protection: Option<ProtectionBoard>,
    /// The task-protection drivers, one per cluster: the services' protection calls
    /// are coalesced per cluster.
    drivers: ProtectionDrivers,
    /// The running services' targets (for the workflow API).
    targets: TargetBoard,
    /// Where the `ecs` and `ec2_cluster` targets journal their scale-in workflows;
    /// `None`: in memory.
    journal: Option<Arc<dyn capstan_targets::ecs::durable::Journal>>,
}

/// Each service's task-protection counters, by service name.
pub type ProtectionBoard = Arc<std::sync::Mutex<BTreeMap<String, ProtectionStatsFn>>>;

impl Services {
    /// No services yet; loops will run on `clock`, read `obs` and record into `log`,
    /// until `stop`.
    pub fn new(
        clock: Arc<dyn Clock>,
        obs: SharedObservations,
        log: Arc<dyn DecisionLog>,
        stop: CancellationToken,
    ) -> Self {
        let drivers = ProtectionDrivers::new(stop.child_token());
        Self {
            clock,
            obs,
            log,
            stop,
            running: BTreeMap::new(),
            loops: JoinSet::new(),
            names: HashMap::new(),
            shutdowns: JoinSet::new(),
            finished: Vec::new(),
            wakers: Arc::default(),
            factory: None,
            registry: Arc::default(),
            aws: AwsClients::default(),
            work: None,
            protection: None,
            drivers,
            targets: TargetBoard::default(),
            journal: None,
        }
    }

    /// Journals the `ecs` targets' scale-in workflows in `journal` (durable: resumed
    /// after a restart).
    #[must_use]
    pub fn with_journal(
        mut self,
        journal: Arc<dyn capstan_targets::ecs::durable::Journal>,
    ) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The running services' targets, kept up to date as services start and stop.
    pub fn targets(&self) -> TargetBoard {
        Arc::clone(&self.targets)
    }

    /// Keeps the running services' targets on `board`.
    #[must_use]
    pub fn with_targets(mut self, board: TargetBoard) -> Self {
        self.targets = board;
        self
    }

    /// Publishes each service's task-protection counters on `board`.
    #[must_use]
    pub fn with_protection_board(mut self, board: ProtectionBoard) -> Self {
        self.protection = Some(board);
        self
    }

    /// Reads the tasks' live work from `work` (loops and targets), and declares every
    /// service started there.
    #[must_use]
    pub fn with_work(mut self, work: WorkRegistry) -> Self {
        self.work = Some(work);
        self
    }

    /// Shares each service's handle through `registry` (the API reads and controls
    /// them there).
    #[must_use]
    pub fn with_registry(mut self, registry: Arc<Registry>) -> Self {
        self.registry = registry;
        self
    }

    /// Registers the services' wakers in `wakers` (shared with the pollers).
    #[must_use]
    pub fn with_wakers(mut self, wakers: Arc<Wakers>) -> Self {
        self.wakers = wakers;
        self
    }

    /// Builds targets with `factory` first (see [`TargetFactory`]).
    #[must_use]
    pub fn with_factory(mut self, factory: Option<TargetFactory>) -> Self {
        self.factory = factory;
        self
    }

    /// The names of the running services.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.running.keys().map(String::as_str)
    }

    /// How `spec` differs from the running service of that name (`None` if there is
    /// none).
    pub fn change(&self, spec: &ServiceSpec) -> Option<Change> {
        let running = self.running.get(&spec.name)?;
        Some(if running.spec.target != spec.target {
            Change::Target
        } else if running.spec.engine != spec.engine
            || running.spec.interval != spec.interval
            || running.spec.work_ttl != spec.work_ttl
            || running.spec.victims != spec.victims
        {
            Change::Settings
        } else {
            Change::None
        })
    }

    /// Builds the target of `spec` (nothing started if it fails).
    pub fn build_target(&self, spec: &ServiceSpec) -> Result<AnyTarget, TargetError> {
        // An ec2_cluster target reads the live work of every service's tasks on its
        // hosts; the others their own service's.
        let work = self.work.as_ref().map(|w| {
            if uses_work_registry(spec) {
                w.counts_for(&spec.name)
            } else {
                w.counts_any()
            }
        });
        let journal = self.journal.clone();
        let parts = TargetParts {
            work: work.clone(),
            journal: journal.clone(),
        };
        if let Some(target) = self.factory.as_ref().and_then(|f| f(spec, parts)) {
            return target;
        }
        AnyTarget::build(
            &spec.name,
            &spec.target,
            &self.clock,
            &self.aws,
            work,
            journal,
        )
    }

    /// The loop of `spec` on `target`, sharing its registry handle (a service restarted
    /// by a reload keeps it: pauses and overrides stay), with the cooldowns and rate
    /// limits the store's last carried-out changes left running (also after a restart,
    /// and from one `--once` run to the next).
    fn new_loop(
        &self,
        spec: &ServiceSpec,
        target: AnyTarget,
    ) -> ServiceLoop<AnyTarget, Arc<dyn Clock>> {
        let handle = self.registry.register(
            &spec.name,
            spec.engine.planner.bounds,
            spec.engine.planner.dry_run,
        );
        // The work registry: the service is declared there (its tasks may report), or
        // forgotten (a reload that made its target an ec2_cluster).
        let work = match &self.work {
            Some(work) if uses_work_registry(spec) => {
                work.configure(&spec.name, Some(spec.work_ttl));
                Some(work)
            }
            Some(work) => {
                work.remove(&spec.name);
                None
            }
            None => None,
        };
        let service_loop = ServiceLoop::restore(
            spec.engine.clone(),
            target.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.obs),
            Arc::clone(&self.log),
        )
        .unwrap_or_else(|e| {
            tracing::warn!(service = %spec.name, error = %e, "cannot read the last changes from the store; starting without cooldowns");
            ServiceLoop::new(
                spec.engine.clone(),
                target,
                Arc::clone(&self.clock),
                Arc::clone(&self.obs),
                Arc::clone(&self.log),
            )
        })
        .with_handle(handle)
        .with_victims(spec.victims.clone());
        match work {
            Some(work) => service_loop.with_work(work.clone()),
            None => service_loop,
        }
    }

    /// Starts the loop of `spec` on `target` (built with [`Self::build_target`]).
    pub fn start(&mut self, spec: ServiceSpec, target: AnyTarget) {
        let service_loop = self.new_loop(&spec, target.clone());
        let cancel = self.stop.child_token();
        let wake = Arc::new(Notify::new());
        self.wakers
            .set(&spec.name, Arc::clone(&wake), sources_of(&spec.engine));
        let (settings, updates) = watch::channel(Settings {
            engine: spec.engine.clone(),
            interval: spec.interval,
            victims: spec.victims.clone(),
        });
        self.targets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), target.clone());
        target.spawn_workflow_pump(cancel.clone());
        if let Some(stats) = self.drivers.join(&target)
            && let Some(board) = &self.protection
        {
            board
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(spec.name.clone(), stats);
        }
        let handle = self.loops.spawn(drive(
            service_loop,
            spec.interval,
            updates,
            wake,
            cancel.clone(),
        ));
        self.names.insert(handle.id(), spec.name.clone());
        self.running.insert(
            spec.name.clone(),
            Running {
                id: handle.id(),
                spec,
                target,
                cancel,
                settings,
            },
        );
    }

    /// Evaluates `spec` once on `target` (`--once`): its task ticks once and ends; see
    /// [`Self::wait_all`].
    pub fn start_once(&mut self, spec: ServiceSpec, target: AnyTarget) {
        let mut service_loop = self.new_loop(&spec, target);
        let cancel = self.stop.child_token();
        let handle = self.loops.spawn(async move {
            tokio::select! {
                biased;
                () = cancel.cancelled() => {}
                result = service_loop.tick() => match result {
                    // The loop logs changes at INFO, holds only at DEBUG: say this one.
                    Ok(decision) if matches!(decision.action, Action::Hold { .. }) => {
                        tracing::info!(
                            service = %decision.service,
                            desired = decision.action.desired(),
                            dry_run = decision.dry_run,
                            "{}",
                            decision.sentence()
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(service = %service_loop.service(), error = %e, "evaluation failed"),
                }
            }
            service_loop
        });
        self.names.insert(handle.id(), spec.name);
    }

    /// Waits until every loop has ended (`--once`); their targets are shut down by
    /// [`Self::stop_all`].
    pub async fn wait_all(&mut self) {
        while let Some(ended) = self.loops.join_next_with_id().await {
            match ended {
                Ok((id, service_loop)) => {
                    self.names.remove(&id);
                    self.finished.push(service_loop.into_target());
                }
                Err(e) => {
                    let name = self.names.remove(&e.id()).unwrap_or_default();
                    tracing::error!(service = %name, reason = %super::panic_reason(e), "an evaluation failed");
                }
            }
        }
    }

    /// Applies new settings (policies, planner, interval) of a running service in
    /// place. Returns false if no such service runs.
    pub fn update(&mut self, spec: ServiceSpec) -> bool {
        let Some(running) = self.running.get_mut(&spec.name) else {
            return false;
        };
        running.settings.send_replace(Settings {
            engine: spec.engine.clone(),
            interval: spec.interval,
            victims: spec.victims.clone(),
        });
        self.wakers
            .set_sources(&spec.name, sources_of(&spec.engine));
        if let Some(work) = &self.work
            && uses_work_registry(&spec)
        {
            work.configure(&spec.name, Some(spec.work_ttl));
        }
        running.spec = spec;
        true
    }

    /// Stops the loop of `name` and forgets its handle (pauses, overrides); its target
    /// is shut down once the loop has ended.
    pub fn remove(&mut self, name: &str) {
        self.stop_loop(name);
        self.registry.remove(name);
        if let Some(work) = &self.work {
            work.remove(name);
        }
    }

    /// Stops the loop of `name` to start it again at once with another target: its
    /// handle (pauses, overrides) is kept; the old target is shut down once the old
    /// loop has ended.
    pub fn stop_loop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.cancel.cancel();
            self.drivers.leave(&running.target);
            self.wakers.remove(name);
            if let Some(board) = &self.protection {
                board
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(name);
            }
            self.targets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
        }
    }

    /// Waits for the next loop to end. A loop of a removed service ends normally: its
    /// target is shut down in the background and this keeps waiting. Returns the
    /// service and why, when a running service's loop ended on its own (a bug or a
    /// panic); `None` once no loop is left.
    pub async fn next_failure(&mut self) -> Option<(String, String)> {
        loop {
            let ended = self.loops.join_next_with_id().await?;
            let (id, outcome) = match ended {
                Ok((id, service_loop)) => (id, Ok(service_loop)),
                Err(e) => (e.id(), Err(super::panic_reason(e))),
            };
            let name = self.names.remove(&id).unwrap_or_default();
            let still_wanted =
                self.running.get(&name).is_some_and(|r| r.id == id) && !self.stop.is_cancelled();
            match outcome {
                Ok(service_loop) if !still_wanted => {
                    let target = service_loop.into_target();
                    self.shutdowns.spawn(async move {
                        target.shutdown().await;
                        tracing::info!(service = %target.name(), "target shut down");
                    });
                }
                Ok(_) => return Some((name, "it returned".to_owned())),
                Err(reason) => return Some((name, reason)),
            }
        }
    }

    /// Stops every loop, waits for them, then shuts every target down (all at once,
    /// those of removed services too) and waits for that as well.
    pub async fn stop_all(mut self) {
        self.stop.cancel();
        let mut targets = std::mem::take(&mut self.finished);
        while let Some(ended) = self.loops.join_next_with_id().await {
            match ended {
                Ok((id, service_loop)) => {
                    self.names.remove(&id);
                    targets.push(service_loop.into_target());
                }
                Err(e) => {
                    let id = e.id();
                    let name = self.names.remove(&id).unwrap_or_default();
                    tracing::error!(service = %name, reason = %super::panic_reason(e), "a control loop failed");
                    if let Some(running) = self.running.get(&name).filter(|r| r.id == id) {
                        targets.push(running.target.clone());
                    }
                }
            }
        }
        for target in targets {
            self.shutdowns.spawn(async move {
                target.shutdown().await;
                tracing::info!(service = %target.name(), "target shut down");
            });
        }
        while self.shutdowns.join_next().await.is_some() {}
    }
}

/// One service's task: tick every interval (a tick that runs late delays the next
/// ones rather than bunching them up), and also at once when woken; a failed tick is
/// tried again after 1 s, 2 s, 4 s, ... (at most the interval); new settings are
/// applied between ticks. Ends when cancelled and gives the loop back (its target to
/// shut down).
async fn drive(
    mut service_loop: ServiceLoop<AnyTarget, Arc<dyn Clock>>,
    interval: Duration,
    mut updates: watch::Receiver<Settings>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) -> ServiceLoop<AnyTarget, Arc<dyn Clock>> {
    let service = service_loop.service().to_owned();
    tracing::info!(service = %service, interval_s = interval.as_secs_f64(), "control loop started");
    let mut ticks = every(interval);
    // Consecutive failed ticks.
    let mut failures: u32 = 0;
    let mut backoff = Backoff::new(RETRY_BASE, interval, Backoff::seed_of(&service));
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            changed = updates.changed() => {
                if changed.is_ok() {
                    let settings = updates.borrow_and_update().clone();
                    if settings.interval != ticks.period() {
                        ticks = every(settings.interval);
                    }
                    service_loop.reconfigure(settings.engine);
                    service_loop.set_victims(settings.victims);
                    tracing::info!(service = %service, interval_s = settings.interval.as_secs_f64(), "configuration reloaded; cooldowns and stabilization kept");
                }
                continue;
            }
            () = wake.notified() => {
                // The periodic tick comes a whole interval after this one.
                ticks.reset();
            }
            _ = ticks.tick() => {}
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            result = service_loop.tick() => match result {
                Ok(_) => failures = 0,
                Err(e) => {
                    // Tried again soon (1 s, 2 s, 4 s, ... at most the interval), not
                    // a whole interval later: the decision is made again then, from
                    // what the target reports.
                    failures = failures.saturating_add(1);
                    let retry = retry_after(&mut backoff, failures, ticks.period());
                    ticks.reset_after(retry);
                    tracing::warn!(service = %service, error = %e, retry_s = retry.as_secs_f64(), "tick failed; trying again");
                }
            }
        }
    }
    tracing::info!(service = %service, "control loop stopped");
    service_loop
}

/// The first retry's ceiling after a failed tick.
const RETRY_BASE: Duration = Duration::from_secs(1);

/// When to try again after the `failures`-th failed tick in a row: exponential backoff
/// (1 s, 2 s, 4 s, ... at most `period`) with jitter: between half the ceiling and the
/// ceiling, so services that fail together (a throttled API) do not retry together.
fn retry_after(backoff: &mut Backoff, failures: u32, period: Duration) -> Duration {
    let attempt = failures.saturating_sub(1);
    let ceiling = backoff.ceiling(attempt).min(period);
    (ceiling / 2 + backoff.delay(attempt) / 2).min(ceiling)
}

/// A timer firing at once, then every `period` (late ticks delay the next ones).
fn every(period: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(period.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_ticks_back_off_exponentially_with_jitter_within_the_interval() {
        let period = Duration::from_secs(10);
        let mut backoff = Backoff::new(RETRY_BASE, period, 7);
        for (failures, ceiling) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)] {
            let ceiling = Duration::from_secs(ceiling);
            for _ in 0..50 {
                let retry = retry_after(&mut backoff, failures, period);
                assert!(
                    retry >= ceiling / 2 && retry <= ceiling,
                    "failure {failures}: {retry:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        // Two services failing together do not retry at the same instant.
        let mut a = Backoff::new(RETRY_BASE, period, Backoff::seed_of("a"));
        let mut b = Backoff::new(RETRY_BASE, period, Backoff::seed_of("b"));
        assert_ne!(
            retry_after(&mut a, 3, period),
            retry_after(&mut b, 3, period)
        );
    }
}
