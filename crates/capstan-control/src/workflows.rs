//! The scale-in workflows' journal in capstan's store: the bridge between the ECS
//! target's durable workflows ([`Journal`]) and the [`WorkflowStore`] (SQLite by
//! default), fenced so that two capstans on one store cannot both drive a workflow.

use std::sync::Arc;

use capstan_core::workflow::{Event, Step, Workflow};
use capstan_store::{JournalEntry, StoreError, StoredWorkflow, WorkflowStore};
use capstan_targets::ecs::durable::Journal;

/// A [`Journal`] over a [`WorkflowStore`], holding this process's fencing token.
#[derive(Clone)]
pub struct StoreJournal {
    store: Arc<dyn WorkflowStore>,
    fence: u64,
}

impl std::fmt::Debug for StoreJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreJournal")
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl StoreJournal {
    /// Takes `store` for this process (a new fencing token: a capstan that held it
    /// before can no longer write).
    pub fn acquire(store: Arc<dyn WorkflowStore>) -> Result<Self, StoreError> {
        let fence = store.acquire()?;
        Ok(Self { store, fence })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn WorkflowStore> {
        &self.store
    }
}

/// A workflow's stored form.
pub fn to_stored(w: &Workflow, fence: u64) -> Result<StoredWorkflow, String> {
    Ok(StoredWorkflow {
        id: w.id.clone(),
        service: w.service.clone(),
        status: w.status.as_str().to_owned(),
        state: serde_json::to_string(w).map_err(|e| format!("workflow {}: {e}", w.id))?,
        fence,
        created: w.created_at,
        updated: w.created_at,
    })
}

/// The workflow a stored row holds.
pub fn from_stored(s: &StoredWorkflow) -> Result<Workflow, String> {
    serde_json::from_str(&s.state).map_err(|e| {
        format!(
            "workflow {} of service {}: unreadable state: {e}",
            s.id, s.service
        )
    })
}

fn to_entry(e: &Event) -> JournalEntry {
    JournalEntry {
        seq: 0,
        at: e.at,
        step: e.step.as_str().to_owned(),
        event: e.event.clone(),
        detail: e.detail.clone(),
    }
}

/// The step a journal entry names, if it is one.
pub fn step_of(name: &str) -> Option<Step> {
    Step::ALL.into_iter().find(|s| s.as_str() == name)
}

impl Journal for StoreJournal {
    fn save(&self, workflow: &Workflow, events: &[Event]) -> Result<(), String> {
        let mut stored = to_stored(workflow, self.fence)?;
        if let Some(last) = events.last() {
            stored.updated = last.at;
        }
        let entries: Vec<JournalEntry> = events.iter().map(to_entry).collect();
        self.store
            .save(&stored, &entries)
            .map_err(|e| e.to_string())
    }

    fn active(&self, service: &str) -> Result<Vec<Workflow>, String> {
        self.store
            .active()
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|s| s.service == service)
            .map(from_stored)
            .collect()
    }
}
