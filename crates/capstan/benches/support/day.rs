//! A day of synthetic history (and decisions) for the benches that need many services with a full
//! 24 h window (`history`, `web_load`): the same shape everywhere, so their figures
//! compare.

use std::sync::Arc;
use std::time::Duration;

use capstan::server::api::Services;
use capstan::server::{self, Exporter, ServerState};
use capstan_control::Registry;
use capstan_control::registry::ServiceHandle;
use capstan_core::Timestamp;
use capstan_core::clock::{Clock, VirtualClock};
use capstan_core::decision::{Action, Decision, Rule};
use capstan_core::history::{Reading, Tick};
use capstan_core::model::Capacity;
use capstan_sources::PushStore;
use capstan_store::{DecisionLog, MemoryStore};
use tokio_util::sync::CancellationToken;

/// The environment variable `name` as a number, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A change of `service` from `from` to `to` at `at`, won by policy `cpu` (what the
/// benches put in the decision log).
pub fn decision(service: &str, at: Timestamp, from: u32, to: u32) -> Decision {
    Decision {
        service: service.to_owned(),
        at,
        capacity: Capacity {
            desired: from,
            running: from,
            pending: 0,
        },
        asks: Vec::new(),
        rule: Rule::LargestScaleOut,
        winner: Some("cpu".into()),
        combined: to,
        min: 1,
        max: 20,
        steps: Vec::new(),
        action: if to > from {
            Action::ScaleOut { from, to }
        } else {
            Action::ScaleIn { from, to }
        },
        dry_run: false,
    }
}

/// Records `ticks` samples `tick_s` apart from `start` into `h`: desired (= running)
/// stepping between 3 and 7 every half hour, and two policies (`cpu` against 60,
/// `queue` against 100) on a 10-minute saw-tooth.
pub fn fill(h: &ServiceHandle, start: Timestamp, ticks: u64, tick_s: u64) {
    for k in 0..ticks {
        let at = capstan_core::clock::add(start, Duration::from_secs(k * tick_s));
        let desired = 3 + u32::try_from((k * tick_s / 1800) % 5).unwrap_or(0);
        let wave = f64::from(u32::try_from(k % 600).unwrap_or(0)) / 10.0;
        let policies = [
            (
                "cpu",
                Reading {
                    value: Some(30.0 + wave),
                    target: Some(60.0),
                },
            ),
            (
                "queue",
                Reading {
                    value: Some(wave * 3.0),
                    target: Some(100.0),
                },
            ),
        ];
        h.record_history(&Tick {
            at,
            desired,
            running: desired,
            pending: 0,
            policies: &policies,
        });
    }
}

/// A day of decisions for each service of `handles`: one every 30 minutes from `start`
/// in `log` (the decision list's pages), and the last one, at `end`, on the handle (the
/// overview's).
pub fn decisions(
    handles: &[Arc<ServiceHandle>],
    log: &MemoryStore,
    start: Timestamp,
    end: Timestamp,
) {
    for h in handles {
        for j in 0..48u32 {
            let at = capstan_core::clock::add(start, Duration::from_secs(u64::from(j) * 1800));
            let (from, to) = (3 + j % 5, 3 + (j + 1) % 5);
            log.record(&decision(h.name(), at, from, to)).unwrap();
        }
        h.record_decision(&decision(h.name(), end, 3, 4), end);
    }
}

/// The API (and the page) over `registry` and `log` on `clock`, served on loopback until
/// `cancel`: its base URL.
pub async fn serve_api(
    registry: &Arc<Registry>,
    log: Arc<MemoryStore>,
    clock: Arc<VirtualClock>,
    cancel: &CancellationToken,
) -> String {
    let dyn_clock: Arc<dyn Clock> = clock;
    let exporter = Arc::new(Exporter::new(&[], Arc::clone(&dyn_clock)));
    let state =
        ServerState::new(None, exporter, PushStore::new(Arc::clone(&dyn_clock))).with_services(
            Services::new(Arc::clone(registry), log as Arc<dyn DecisionLog>, dyn_clock),
        );
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(server::serve(
        listener,
        server::router(state),
        cancel.clone(),
    ));
    base
}
