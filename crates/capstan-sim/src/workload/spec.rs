//! What a workload is, as written in a scenario, and its validation into the model's
//! parameters.

use serde::{Deserialize, Serialize};

use super::WorkloadError;
use super::dist::{Dist, Sampler, positive};

/// How arrivals are counted in each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// A Poisson number per step (mean = rate × step), arriving at random instants of
    /// the step.
    #[default]
    Poisson,
    /// Exactly rate × step, fractions carried to the next step, arriving mid-step:
    /// no randomness in the arrivals (durations are still drawn).
    Even,
}

/// What the service's tasks do with the demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WorkloadSpec {
    /// Workers pulling messages from a queue (SQS, a Redis list): demand = messages
    /// per second.
    Queue {
        /// Processing time of one message (`{ kind = "trace" }`: the trace's).
        processing: Dist,
        /// Messages one task works on at once.
        #[serde(default = "one")]
        concurrency: u32,
        /// The SLO: the oldest waiting message is at most this old, seconds.
        slo_age_s: f64,
        /// CPU of an idle task, percent of its reservation.
        #[serde(default = "cpu_base")]
        cpu_base_pct: f64,
        /// CPU of a task with every slot busy, percent.
        #[serde(default = "cpu_busy")]
        cpu_busy_pct: f64,
        /// Memory of an idle task, percent.
        #[serde(default = "memory_base")]
        memory_base_pct: f64,
        /// Memory of a task with every slot busy, percent.
        #[serde(default = "memory_busy")]
        memory_busy_pct: f64,
        /// How arrivals are counted.
        #[serde(default)]
        arrivals: Arrivals,
    },
    /// Request traffic behind a load balancer: demand = requests per second.
    Requests {
        /// Service time of one request at full speed.
        duration: Dist,
        /// Concurrent requests a task serves at full speed.
        capacity: u32,
        /// The SLO: at most 1 % of a step's requests slower than this, seconds, and
        /// none failed.
        slo_latency_s: f64,
        /// CPU of an idle task, percent.
        #[serde(default = "cpu_base")]
        cpu_base_pct: f64,
        /// CPU per request in flight, percent (default: `capacity` requests fill the
        /// rest of the task to 100 %).
        #[serde(default)]
        cpu_per_request_pct: Option<f64>,
        /// Memory of an idle task, percent.
        #[serde(default = "memory_base")]
        memory_base_pct: f64,
        /// Memory per request in flight, percent.
        #[serde(default)]
        memory_per_request_pct: f64,
        /// How arrivals are counted.
        #[serde(default)]
        arrivals: Arrivals,
    },
    /// Long sessions (remote desktops, websockets) pinned to the task they landed on:
    /// demand = new sessions per second.
    Sessions {
        /// How long a session lasts.
        duration: Dist,
        /// CPU per live session, percent.
        cpu_per_session_pct: f64,
        /// Memory per live session, percent.
        memory_per_session_pct: f64,
        /// CPU of a task without sessions, percent.
        #[serde(default = "cpu_base")]
        cpu_base_pct: f64,
        /// Memory of a task without sessions, percent.
        #[serde(default = "memory_base")]
        memory_base_pct: f64,
        /// Sessions a task accepts at most (a full task refuses new ones).
        #[serde(default)]
        max_per_task: Option<u32>,
        /// How arrivals are counted.
        #[serde(default)]
        arrivals: Arrivals,
    },
}

fn one() -> u32 {
    1
}

fn cpu_base() -> f64 {
    2.0
}

fn cpu_busy() -> f64 {
    90.0
}

fn memory_base() -> f64 {
    30.0
}

fn memory_busy() -> f64 {
    60.0
}

/// The validated model parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Model {
    /// See [`WorkloadSpec::Queue`].
    Queue {
        processing: Sampler,
        concurrency: u32,
        slo_age: f64,
        cpu_base: f64,
        cpu_busy: f64,
        memory_base: f64,
        memory_busy: f64,
    },
    /// See [`WorkloadSpec::Requests`].
    Requests {
        duration: Sampler,
        capacity: u32,
        slo_latency: f64,
        cpu_base: f64,
        cpu_per: f64,
        memory_base: f64,
        memory_per: f64,
    },
    /// See [`WorkloadSpec::Sessions`].
    Sessions {
        duration: Sampler,
        cpu_base: f64,
        cpu_per: f64,
        memory_base: f64,
        memory_per: f64,
        /// Sessions a task holds at most (explicit, or until CPU or memory reaches
        /// 100 %).
        per_task: f64,
        /// The explicit maximum, if any.
        max_per_task: Option<u32>,
    },
}

/// `v` if it is a percentage in [0, 100], else an error naming `field`.
fn percent(field: &str, v: f64) -> Result<f64, WorkloadError> {
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(WorkloadError::invalid(
            field,
            format!("must be a percentage between 0 and 100, got {v}"),
        ))
    }
}

/// `v` if it is at least 1, else an error naming `field`.
fn at_least_one(field: &str, v: u32) -> Result<u32, WorkloadError> {
    if v >= 1 {
        Ok(v)
    } else {
        Err(WorkloadError::invalid(field, "must be at least 1, got 0"))
    }
}

/// Sessions that fit until `per` (per session) on top of `base` reaches 100 %.
fn fit(base: f64, per: f64) -> f64 {
    if per > 0.0 {
        ((100.0 - base) / per).floor()
    } else {
        f64::INFINITY
    }
}

impl Model {
    /// Validates a spec; every error names its field.
    pub(crate) fn new(spec: &WorkloadSpec) -> Result<Self, WorkloadError> {
        Ok(match *spec {
            WorkloadSpec::Queue {
                ref processing,
                concurrency,
                slo_age_s,
                cpu_base_pct,
                cpu_busy_pct,
                memory_base_pct,
                memory_busy_pct,
                arrivals: _,
            } => Self::Queue {
                processing: Sampler::new(processing, "processing")?,
                concurrency: at_least_one("concurrency", concurrency)?,
                slo_age: positive("slo_age_s", slo_age_s)?,
                cpu_base: percent("cpu_base_pct", cpu_base_pct)?,
                cpu_busy: percent("cpu_busy_pct", cpu_busy_pct)?,
                memory_base: percent("memory_base_pct", memory_base_pct)?,
                memory_busy: percent("memory_busy_pct", memory_busy_pct)?,
            },
            WorkloadSpec::Requests {
                ref duration,
                capacity,
                slo_latency_s,
                cpu_base_pct,
                cpu_per_request_pct,
                memory_base_pct,
                memory_per_request_pct,
                arrivals: _,
            } => {
                let capacity = at_least_one("capacity", capacity)?;
                let cpu_base = percent("cpu_base_pct", cpu_base_pct)?;
                let cpu_per = match cpu_per_request_pct {
                    Some(v) => percent("cpu_per_request_pct", v)?,
                    None => (100.0 - cpu_base) / f64::from(capacity),
                };
                Self::Requests {
                    duration: Sampler::new(duration, "duration")?,
                    capacity,
                    slo_latency: positive("slo_latency_s", slo_latency_s)?,
                    cpu_base,
                    cpu_per,
                    memory_base: percent("memory_base_pct", memory_base_pct)?,
                    memory_per: percent("memory_per_request_pct", memory_per_request_pct)?,
                }
            }
            WorkloadSpec::Sessions {
                ref duration,
                cpu_per_session_pct,
                memory_per_session_pct,
                cpu_base_pct,
                memory_base_pct,
                max_per_task,
                arrivals: _,
            } => {
                let cpu_base = percent("cpu_base_pct", cpu_base_pct)?;
                let memory_base = percent("memory_base_pct", memory_base_pct)?;
                let cpu_per = percent("cpu_per_session_pct", cpu_per_session_pct)?;
                let memory_per = percent("memory_per_session_pct", memory_per_session_pct)?;
                let max = max_per_task
                    .map(|m| at_least_one("max_per_task", m))
                    .transpose()?;
                let per_task = max
                    .map_or(f64::INFINITY, f64::from)
                    .min(fit(cpu_base, cpu_per))
                    .min(fit(memory_base, memory_per));
                if per_task.is_infinite() {
                    return Err(WorkloadError::invalid(
                        "max_per_task",
                        "a task's capacity is unbounded: set max_per_task, or a \
                         cpu_per_session_pct or memory_per_session_pct above 0",
                    ));
                }
                if per_task < 1.0 {
                    return Err(WorkloadError::invalid(
                        "memory_per_session_pct",
                        format!(
                            "not even one session fits in a task (base {cpu_base} % CPU + \
                             {cpu_per} % per session, base {memory_base} % memory + \
                             {memory_per} % per session)"
                        ),
                    ));
                }
                Self::Sessions {
                    duration: Sampler::new(duration, "duration")?,
                    cpu_base,
                    cpu_per,
                    memory_base,
                    memory_per,
                    per_task,
                    max_per_task: max,
                }
            }
        })
    }

    /// The sampler of the work's duration.
    pub(crate) fn sampler(&self) -> Sampler {
        match *self {
            Self::Queue { processing, .. } => processing,
            Self::Requests { duration, .. } | Self::Sessions { duration, .. } => duration,
        }
    }

    /// Items one task handles at full efficiency.
    pub(crate) fn per_task(&self) -> f64 {
        match *self {
            Self::Queue { concurrency, .. } => f64::from(concurrency),
            Self::Requests { capacity, .. } => f64::from(capacity),
            Self::Sessions { per_task, .. } => per_task,
        }
    }

    /// CPU and memory of a task as a function of the work it holds.
    pub(crate) fn usage(&self) -> Usage {
        match *self {
            Self::Queue {
                concurrency,
                cpu_base,
                cpu_busy,
                memory_base,
                memory_busy,
                ..
            } => {
                let slots = f64::from(concurrency);
                Usage {
                    cpu: (cpu_base, (cpu_busy - cpu_base) / slots),
                    memory: (memory_base, (memory_busy - memory_base) / slots),
                }
            }
            Self::Requests {
                cpu_base,
                cpu_per,
                memory_base,
                memory_per,
                ..
            }
            | Self::Sessions {
                cpu_base,
                cpu_per,
                memory_base,
                memory_per,
                ..
            } => Usage {
                cpu: (cpu_base, cpu_per),
                memory: (memory_base, memory_per),
            },
        }
    }
}

/// CPU and memory, percent of the task's reservation: base + per item × items (a queue
/// task's item is a busy slot: busy share × (busy − base)), each capped at 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Usage {
    /// CPU: (base, per item).
    pub cpu: (f64, f64),
    /// Memory: (base, per item).
    pub memory: (f64, f64),
}

impl Usage {
    /// CPU and memory of a task holding `items`.
    #[inline]
    pub(crate) fn at(&self, items: u64) -> (f64, f64) {
        let n = items as f64;
        (
            (self.cpu.0 + self.cpu.1 * n).min(100.0),
            (self.memory.0 + self.memory.1 * n).min(100.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> WorkloadSpec {
        queue_with(|_| {})
    }

    /// The test queue, changed by `f`.
    fn queue_with(f: impl FnOnce(&mut WorkloadSpec)) -> WorkloadSpec {
        let mut spec = WorkloadSpec::Queue {
            processing: Dist::Fixed { s: 2.0 },
            concurrency: 2,
            slo_age_s: 60.0,
            cpu_base_pct: 2.0,
            cpu_busy_pct: 90.0,
            memory_base_pct: 30.0,
            memory_busy_pct: 60.0,
            arrivals: Arrivals::Even,
        };
        f(&mut spec);
        spec
    }

    #[test]
    fn specs_read_from_json_with_defaults() {
        let spec: WorkloadSpec = serde_json::from_str(
            r#"{"kind":"queue","processing":{"kind":"fixed","s":2},"concurrency":2,"slo_age_s":60,"arrivals":"even"}"#,
        )
        .expect("valid");
        assert_eq!(spec, queue());
        let spec: WorkloadSpec = serde_json::from_str(
            r#"{"kind":"requests","duration":{"kind":"lognormal","median_s":0.2,"p95_s":1},"capacity":10,"slo_latency_s":2}"#,
        )
        .expect("valid");
        let Model::Requests { cpu_per, .. } = Model::new(&spec).expect("valid") else {
            panic!("requests");
        };
        assert!((cpu_per - 9.8).abs() < 1e-12);
        let err = serde_json::from_str::<WorkloadSpec>(
            r#"{"kind":"queue","processing":{"kind":"trace"},"slo_age_s":60,"colour":1}"#,
        )
        .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn impossible_workloads_name_their_field() {
        let cases: Vec<(WorkloadSpec, &str)> = vec![
            (
                WorkloadSpec::Requests {
                    duration: Dist::Fixed { s: 1.0 },
                    capacity: 0,
                    slo_latency_s: 1.0,
                    cpu_base_pct: 2.0,
                    cpu_per_request_pct: None,
                    memory_base_pct: 30.0,
                    memory_per_request_pct: 0.0,
                    arrivals: Arrivals::Poisson,
                },
                "capacity: must be at least 1, got 0",
            ),
            (
                queue_with(|s| {
                    if let WorkloadSpec::Queue { concurrency, .. } = s {
                        *concurrency = 0;
                    }
                }),
                "concurrency: must be at least 1, got 0",
            ),
            (
                queue_with(|s| {
                    if let WorkloadSpec::Queue { slo_age_s, .. } = s {
                        *slo_age_s = -1.0;
                    }
                }),
                "slo_age_s: must be > 0, got -1",
            ),
            (
                queue_with(|s| {
                    if let WorkloadSpec::Queue { cpu_busy_pct, .. } = s {
                        *cpu_busy_pct = 120.0;
                    }
                }),
                "cpu_busy_pct: must be a percentage between 0 and 100, got 120",
            ),
            (
                queue_with(|s| {
                    if let WorkloadSpec::Queue { processing, .. } = s {
                        *processing = Dist::Fixed { s: 0.0 };
                    }
                }),
                "processing.s: must be > 0, got 0",
            ),
            (
                WorkloadSpec::Sessions {
                    duration: Dist::Exponential { mean_s: 3600.0 },
                    cpu_per_session_pct: 0.0,
                    memory_per_session_pct: 0.0,
                    cpu_base_pct: 2.0,
                    memory_base_pct: 30.0,
                    max_per_task: None,
                    arrivals: Arrivals::Poisson,
                },
                "max_per_task: a task's capacity is unbounded: set max_per_task, or a \
                 cpu_per_session_pct or memory_per_session_pct above 0",
            ),
            (
                WorkloadSpec::Sessions {
                    duration: Dist::Exponential { mean_s: 3600.0 },
                    cpu_per_session_pct: 1.0,
                    memory_per_session_pct: 1.0,
                    cpu_base_pct: 2.0,
                    memory_base_pct: 30.0,
                    max_per_task: Some(0),
                    arrivals: Arrivals::Poisson,
                },
                "max_per_task: must be at least 1, got 0",
            ),
        ];
        for (spec, want) in cases {
            let err = Model::new(&spec).expect_err(want);
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn usage_follows_the_load_and_caps_at_100() {
        let m = Model::new(&queue()).expect("valid").usage();
        assert_eq!(m.at(0), (2.0, 30.0));
        assert_eq!(m.at(1), (46.0, 45.0));
        assert_eq!(m.at(2), (90.0, 60.0));
        let sessions = Model::new(&WorkloadSpec::Sessions {
            duration: Dist::Fixed { s: 60.0 },
            cpu_per_session_pct: 10.0,
            memory_per_session_pct: 20.0,
            cpu_base_pct: 5.0,
            memory_base_pct: 10.0,
            max_per_task: None,
            arrivals: Arrivals::Even,
        })
        .expect("valid");
        assert_eq!(sessions.per_task(), 4.0);
        assert_eq!(sessions.usage().at(3), (35.0, 70.0));
        assert_eq!(sessions.usage().at(9), (95.0, 100.0));
    }
}
