//! The running sources: the pollers of the current configuration, replaced as a whole
//! when a reload changes any source.
//!
//! A reload that changes the sources starts a new generation of pollers (built first:
//! if any new source cannot be built, the running ones are kept and the reload is
//! refused), then stops the old generation. The metric windows live on: a source that
//! is unchanged keeps its history (the stabilization and datapoint rules keep working
//! across the reload); a removed or changed source's window is dropped, so a policy
//! never reads the old query's values as the new one's.

use std::sync::{Arc, PoisonError};

use capstan_core::clock::Clock;
use capstan_core::metrics::SharedObservations;
use capstan_sources::error::SourceError;
use capstan_sources::poller::{self, Hooks};
use capstan_sources::{PushStore, SourceSpec};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The pollers of the current sources.
pub struct Sources {
    specs: Vec<SourceSpec>,
    obs: SharedObservations,
    clock: Arc<dyn Clock>,
    hooks: Hooks,
    push: PushStore,
    /// Every generation's token is a child of it.
    stop: CancellationToken,
    /// The current generation.
    generation: CancellationToken,
    /// Every generation's tasks (old ones end soon after their token fires).
    pollers: Vec<JoinSet<()>>,
}

impl Sources {
    /// Starts polling `specs` (see [`poller::spawn_all_with`]) until `stop`.
    pub fn start(
        specs: &[SourceSpec],
        obs: SharedObservations,
        clock: Arc<dyn Clock>,
        push: PushStore,
        hooks: Hooks,
        stop: &CancellationToken,
    ) -> Result<Self, SourceError> {
        push.declare_all(specs);
        let generation = stop.child_token();
        let pollers = poller::spawn_all_with(
            specs,
            Arc::clone(&obs),
            Arc::clone(&clock),
            generation.clone(),
            &hooks,
        )?;
        Ok(Self {
            specs: specs.to_vec(),
            obs,
            clock,
            hooks,
            push,
            stop: stop.clone(),
            generation,
            pollers: vec![pollers],
        })
    }

    /// The sources polled now.
    pub fn specs(&self) -> &[SourceSpec] {
        &self.specs
    }

    /// Polls `specs` from now on. Returns the names of the sources added, changed and
    /// removed (all empty: nothing was restarted). On error nothing changed.
    pub fn reload(&mut self, specs: &[SourceSpec]) -> Result<SourceChanges, SourceError> {
        let changes = SourceChanges::between(&self.specs, specs);
        if changes.is_empty() {
            return Ok(changes);
        }
        if changes.only_resized() {
            // The same reads: the pollers go on, the windows keep their samples.
            let mut obs = self.obs.lock().unwrap_or_else(PoisonError::into_inner);
            for spec in specs.iter().filter(|s| changes.resized.contains(&s.name)) {
                obs.resize(&spec.name, spec.retention, spec.max_age);
            }
            drop(obs);
            specs.clone_into(&mut self.specs);
            return Ok(changes);
        }
        self.push.declare_all(specs);
        let generation = self.stop.child_token();
        let pollers = poller::spawn_all_with(
            specs,
            Arc::clone(&self.obs),
            Arc::clone(&self.clock),
            generation.clone(),
            &self.hooks,
        )?;
        std::mem::replace(&mut self.generation, generation).cancel();
        {
            let mut obs = self.obs.lock().unwrap_or_else(PoisonError::into_inner);
            for name in changes.changed.iter().chain(&changes.removed) {
                obs.forget(name);
            }
            // New windows, and the new length of the resized ones (samples kept).
            for spec in specs {
                obs.resize(&spec.name, spec.retention, spec.max_age);
            }
        }
        // Reap the tasks of generations that have ended, and drop their empty sets.
        for set in &mut self.pollers {
            while set.try_join_next().is_some() {}
        }
        self.pollers.retain(|set| !set.is_empty());
        self.pollers.push(pollers);
        specs.clone_into(&mut self.specs);
        Ok(changes)
    }

    /// Stops every poller and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for set in &mut self.pollers {
            while let Some(ended) = set.join_next().await {
                if let Err(e) = ended {
                    tracing::error!(reason = %super::panic_reason(e), "a poller failed");
                }
            }
        }
    }
}

/// Which sources a reload adds, changes and removes, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceChanges {
    /// New names.
    pub added: Vec<String>,
    /// Same name, other settings.
    pub changed: Vec<String>,
    /// Names no longer configured.
    pub removed: Vec<String>,
    /// Same reads, another window length (`retention` or `max_age`, e.g. after a
    /// policy's datapoints changed): the window is kept and resized.
    pub resized: Vec<String>,
}

impl SourceChanges {
    /// The differences from `old` to `new`.
    pub fn between(old: &[SourceSpec], new: &[SourceSpec]) -> Self {
        let mut changes = Self::default();
        for spec in new {
            match old.iter().find(|o| o.name == spec.name) {
                None => changes.added.push(spec.name.clone()),
                Some(o) if o != spec => {
                    let mut same_reads = o.clone();
                    same_reads.retention = spec.retention;
                    same_reads.max_age = spec.max_age;
                    if same_reads == *spec {
                        changes.resized.push(spec.name.clone());
                    } else {
                        changes.changed.push(spec.name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        for spec in old {
            if !new.iter().any(|n| n.name == spec.name) {
                changes.removed.push(spec.name.clone());
            }
        }
        changes
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.removed.is_empty()
            && self.resized.is_empty()
    }

    /// Only window lengths differ: no poller needs a restart.
    pub fn only_resized(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(text: &str) -> Vec<SourceSpec> {
        let config = crate::config::compile(text, "test.toml", &|_| None).unwrap();
        config.sources
    }

    const BASE: &str = r#"
[sources.cpu]
kind = "command"
command = ["echo", "1"]
interval = "10s"

[sources.jobs]
kind = "command"
command = ["echo", "2"]

[[services]]
name = "api"
max = 10
target = { kind = "process", command = ["true"] }
policies = [{ kind = "threshold", metrics = [{ metric = "cpu", min = 1, max = 9 }], datapoints = { out = 3, in = 3 } }]
"#;

    #[test]
    fn a_change_of_datapoints_resizes_the_window_and_a_new_query_changes_it() {
        let old = specs(BASE);
        // More datapoints: the same reads, a longer window.
        let more = specs(&BASE.replace("in = 3", "in = 30"));
        let changes = SourceChanges::between(&old, &more);
        assert_eq!(changes.resized, vec!["cpu".to_owned()]);
        assert!(changes.changed.is_empty());
        assert!(changes.only_resized());
        // Another command: the window starts afresh.
        let other = specs(&BASE.replace(r#"["echo", "1"]"#, r#"["echo", "3"]"#));
        let changes = SourceChanges::between(&old, &other);
        assert_eq!(changes.changed, vec!["cpu".to_owned()]);
        assert!(changes.resized.is_empty());
        assert!(!changes.only_resized());
    }
}
