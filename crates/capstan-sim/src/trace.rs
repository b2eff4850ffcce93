//! Load traces: the demand (arrivals per second, and optionally the processing time of
//! each message) at every instant of a run, from a CSV file or a generator. A trace is
//! read as it is replayed: memory stays flat whatever its length.
//!
//! # Generators
//!
//! `constant`, `step`, `spike`, `sine` (diurnal with `period_s = 86400`), `sawtooth`,
//! `random_walk` (seeded), `csv`, and `sum` (the sum of other traces: a diurnal curve
//! plus bursts, say). Every kind also takes an optional `processing_time_s`, the
//! processing time of a message (for workloads with `processing = { kind = "trace" }`).
//! Time `t` is seconds since the start of the run; each kind's parameters are documented
//! on [`TraceSpec`].
//!
//! # CSV format
//!
//! ```text
//! # comments and blank lines are skipped
//! timestamp,rate,processing_time
//! 2026-03-01T00:00:00Z,0.8,6.5
//! 2026-03-01T00:01:00Z,1.2,
//! 2026-03-01T00:02:00Z,0.9,7.1
//! ```
//!
//! - A header line is required. Columns are found by name, in any order:
//!   - time, one of: `timestamp` (RFC 3339 with an offset or `Z`) or `seconds` (a
//!     number); the trace starts at the first row's time, whichever it is;
//!   - arrivals, one of: `rate` (arrivals per second: messages, requests or new
//!     sessions, as the workload reads them), `rate_per_minute` (the same per minute),
//!     or `sessions` (new sessions per second: `rate` under a clearer name for session
//!     workloads);
//!   - optionally `processing_time` (seconds per message, > 0). An empty cell keeps the
//!     previous row's value; the first row must have one.
//! - Each row holds until the next one (a step function); after the last row its
//!   value holds for one more step: the trace's length is the last row's offset plus
//!   the step, and past it the last row still holds.
//! - The step is the interval between the first two rows (at least two rows are
//!   needed). Rows must be strictly increasing in time, and no further apart than
//!   1.5 × the step: a longer interval is a gap (missing data), rejected rather than
//!   bridged.
//! - Numbers must be finite and non-negative.
//!
//! The whole file is checked when the trace is opened, so a bad file fails before a
//! run starts. Errors read `FILE:LINE: message`, e.g.
//! `traces/day.csv:9: gap of 300 s after line 8; the trace's step is 60 s` or
//! `traces/day.csv:7: timestamp 2026-03-01T00:05:00Z is not after line 6's
//! 2026-03-01T00:05:10Z`.

mod csv;

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::workload::dist::{inverse_normal, unit_open};
use csv::CsvTrace;

/// The demand at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Demand {
    /// Arrivals per second (messages, requests or new sessions).
    pub rate: f64,
    /// Processing time of a message starting now, seconds, if the trace gives one.
    pub processing_time_s: Option<f64>,
}

/// A trace, as written in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceSpec {
    /// `rate` all the time.
    Constant {
        /// Arrivals per second.
        rate: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// `before` until `at_s`, then `after`.
    Step {
        /// Arrivals per second before the step.
        before: f64,
        /// Arrivals per second from `at_s` on.
        after: f64,
        /// When the step happens, seconds.
        at_s: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// `base`, and `peak` for `duration_s` from `at_s`.
    Spike {
        /// Arrivals per second outside the spike.
        base: f64,
        /// Arrivals per second during the spike.
        peak: f64,
        /// When the spike starts, seconds.
        at_s: f64,
        /// How long it lasts, seconds.
        duration_s: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// `mean + amplitude · sin(2π (t + phase_s) / period_s)`: with `period_s = 86400`, a
    /// diurnal curve; `phase_s = 0` starts at the mean, rising, peaking at a quarter
    /// period.
    Sine {
        /// The mean rate.
        mean: f64,
        /// Half the peak-to-trough swing (≤ `mean`, so the rate stays ≥ 0).
        amplitude: f64,
        /// The period, seconds.
        period_s: f64,
        /// Shift, seconds: the curve at `t` is the plain sine's at `t + phase_s`.
        #[serde(default)]
        phase_s: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// Rises linearly from `low` to `high` over each period, then drops back.
    Sawtooth {
        /// Rate at the start of each period.
        low: f64,
        /// Rate approached at the end of each period.
        high: f64,
        /// The period, seconds.
        period_s: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// Starts at `start`; every `every_s` seconds moves by a normal step of standard
    /// deviation `step_sd`, kept within [`min`, `max`]. Seeded.
    RandomWalk {
        /// The rate at t = 0.
        start: f64,
        /// Standard deviation of each move.
        step_sd: f64,
        /// Seconds between moves.
        every_s: f64,
        /// Lowest rate.
        min: f64,
        /// Highest rate.
        max: f64,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// A CSV file (format in the module documentation), relative to the scenario.
    Csv {
        /// The file.
        path: PathBuf,
        /// Processing time of a message, seconds, for a file without a
        /// `processing_time` column.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
    /// The sum of other traces' rates. The processing time is this trace's own
    /// `processing_time_s`, else the parts' times weighted by their rates.
    Sum {
        /// The traces to add.
        parts: Vec<TraceSpec>,
        /// Processing time of a message, seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        processing_time_s: Option<f64>,
    },
}

/// Why a trace cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{}{}: cannot read: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Read {
        /// The file.
        file: PathBuf,
        /// The line being read, if past the start.
        line: Option<u64>,
        /// The system's reason.
        reason: String,
    },
    /// A line of the file is wrong.
    #[error("{}:{line}: {message}", file.display())]
    Line {
        /// The file.
        file: PathBuf,
        /// Line number (1-based, counting every line).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is wrong (empty, too short).
    #[error("{}: {message}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A generator's parameter is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The parameter (`period_s`, `parts[1].amplitude`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The trace was asked for an earlier time than before (or a time < 0 or NaN).
    #[error("trace asked for t = {t_s} s after t = {last_s} s: time must not go backwards")]
    Backwards {
        /// The time asked for.
        t_s: f64,
        /// The latest time asked before.
        last_s: f64,
    },
}

impl TraceError {
    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The same error with its field under `prefix` (for the parts of a sum).
    fn within(self, prefix: &str) -> Self {
        match self {
            Self::Invalid { field, reason } => Self::Invalid {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

/// A random walk in progress.
#[derive(Debug)]
struct Walk {
    rng: ChaCha8Rng,
    value: f64,
    /// Moves made so far.
    moves: u64,
    step_sd: f64,
    every: f64,
    min: f64,
    max: f64,
}

/// Where the demand comes from.
#[derive(Debug)]
enum Source {
    Constant(f64),
    Step {
        before: f64,
        after: f64,
        at: f64,
    },
    Spike {
        base: f64,
        peak: f64,
        at: f64,
        until: f64,
    },
    Sine {
        mean: f64,
        amplitude: f64,
        period: f64,
        phase: f64,
    },
    Sawtooth {
        low: f64,
        high: f64,
        period: f64,
    },
    Walk(Box<Walk>),
    Csv(Box<CsvTrace>),
    Sum(Vec<Trace>),
}

/// A trace being replayed.
#[derive(Debug)]
pub struct Trace {
    source: Source,
    /// The spec's own `processing_time_s`.
    processing: Option<f64>,
    /// The latest time asked for.
    last: f64,
}

/// `v` if it is a finite number ≥ 0, else an error naming `field`.
fn non_negative(field: &str, v: f64) -> Result<f64, TraceError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(TraceError::invalid(
            field,
            format!("must be a number ≥ 0, got {v}"),
        ))
    }
}

/// `v` if it is a finite number > 0, else an error naming `field`.
fn positive(field: &str, v: f64) -> Result<f64, TraceError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(TraceError::invalid(
            field,
            format!("must be a number > 0, got {v}"),
        ))
    }
}

/// Seed of part `i` of a sum, so parts with random walks differ.
fn part_seed(seed: u64, i: usize) -> u64 {
    seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Trace {
    /// Opens and validates a trace; `base_dir` resolves relative CSV paths, `seed`
    /// drives random walks. A CSV file is checked whole here (streaming), then replayed
    /// lazily.
    pub fn open(spec: &TraceSpec, base_dir: &Path, seed: u64) -> Result<Trace, TraceError> {
        let (source, processing) = match *spec {
            TraceSpec::Constant {
                rate,
                processing_time_s,
            } => (
                Source::Constant(non_negative("rate", rate)?),
                processing_time_s,
            ),
            TraceSpec::Step {
                before,
                after,
                at_s,
                processing_time_s,
            } => (
                Source::Step {
                    before: non_negative("before", before)?,
                    after: non_negative("after", after)?,
                    at: non_negative("at_s", at_s)?,
                },
                processing_time_s,
            ),
            TraceSpec::Spike {
                base,
                peak,
                at_s,
                duration_s,
                processing_time_s,
            } => {
                let at = non_negative("at_s", at_s)?;
                (
                    Source::Spike {
                        base: non_negative("base", base)?,
                        peak: non_negative("peak", peak)?,
                        at,
                        until: at + positive("duration_s", duration_s)?,
                    },
                    processing_time_s,
                )
            }
            TraceSpec::Sine {
                mean,
                amplitude,
                period_s,
                phase_s,
                processing_time_s,
            } => {
                let mean = non_negative("mean", mean)?;
                let amplitude = non_negative("amplitude", amplitude)?;
                if amplitude > mean {
                    return Err(TraceError::invalid(
                        "amplitude",
                        format!("must be ≤ mean ({mean}) so the rate stays ≥ 0, got {amplitude}"),
                    ));
                }
                if !phase_s.is_finite() {
                    return Err(TraceError::invalid(
                        "phase_s",
                        format!("must be a finite number, got {phase_s}"),
                    ));
                }
                (
                    Source::Sine {
                        mean,
                        amplitude,
                        period: positive("period_s", period_s)?,
                        phase: phase_s,
                    },
                    processing_time_s,
                )
            }
            TraceSpec::Sawtooth {
                low,
                high,
                period_s,
                processing_time_s,
            } => (
                Source::Sawtooth {
                    low: non_negative("low", low)?,
                    high: non_negative("high", high)?,
                    period: positive("period_s", period_s)?,
                },
                processing_time_s,
            ),
            TraceSpec::RandomWalk {
                start,
                step_sd,
                every_s,
                min,
                max,
                processing_time_s,
            } => {
                let min = non_negative("min", min)?;
                let max = non_negative("max", max)?;
                if max < min {
                    return Err(TraceError::invalid(
                        "max",
                        format!("must be ≥ min ({min}), got {max}"),
                    ));
                }
                let start = non_negative("start", start)?;
                if !(min..=max).contains(&start) {
                    return Err(TraceError::invalid(
                        "start",
                        format!("must be between min ({min}) and max ({max}), got {start}"),
                    ));
                }
                let walk = Walk {
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    value: start,
                    moves: 0,
                    step_sd: non_negative("step_sd", step_sd)?,
                    every: positive("every_s", every_s)?,
                    min,
                    max,
                };
                (Source::Walk(Box::new(walk)), processing_time_s)
            }
            TraceSpec::Csv {
                ref path,
                processing_time_s,
            } => {
                let file = base_dir.join(path);
                let csv = CsvTrace::open(&file)?;
                if csv.has_processing() && processing_time_s.is_some() {
                    return Err(TraceError::invalid(
                        "processing_time_s",
                        format!(
                            "{} has a processing_time column already; keep one of the two",
                            file.display()
                        ),
                    ));
                }
                (Source::Csv(Box::new(csv)), processing_time_s)
            }
            TraceSpec::Sum {
                ref parts,
                processing_time_s,
            } => {
                if parts.is_empty() {
                    return Err(TraceError::invalid("parts", "must name at least one trace"));
                }
                let parts = parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        Trace::open(p, base_dir, part_seed(seed, i))
                            .map_err(|e| e.within(&format!("parts[{i}]")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (Source::Sum(parts), processing_time_s)
            }
        };
        let processing = processing
            .map(|p| positive("processing_time_s", p))
            .transpose()?;
        Ok(Trace {
            source,
            processing,
            last: 0.0,
        })
    }

    /// The demand at `t_s` seconds since the start. Calls must not go back in time; a
    /// CSV file is read as far as `t_s` and no further.
    pub fn demand_at(&mut self, t_s: f64) -> Result<Demand, TraceError> {
        if !t_s.is_finite() || t_s < self.last {
            return Err(TraceError::Backwards {
                t_s,
                last_s: self.last,
            });
        }
        self.last = t_s;
        let t = t_s;
        let (rate, processing) = match &mut self.source {
            Source::Constant(r) => (*r, None),
            Source::Step { before, after, at } => (if t < *at { *before } else { *after }, None),
            Source::Spike {
                base,
                peak,
                at,
                until,
            } => (
                if (*at..*until).contains(&t) {
                    *peak
                } else {
                    *base
                },
                None,
            ),
            Source::Sine {
                mean,
                amplitude,
                period,
                phase,
            } => (
                (*mean + *amplitude * (TAU * (t + *phase) / *period).sin()).max(0.0),
                None,
            ),
            Source::Sawtooth { low, high, period } => {
                let frac = (t / *period).fract();
                (*low + (*high - *low) * frac, None)
            }
            Source::Walk(w) => (w.at(t), None),
            Source::Csv(c) => {
                let row = c.at(t)?;
                (row.rate, row.processing)
            }
            Source::Sum(parts) => sum(parts, t)?,
        };
        Ok(Demand {
            rate,
            processing_time_s: self.processing.or(processing),
        })
    }

    /// How long the trace runs: a CSV file's last row plus its step (for a sum, its
    /// longest file); `None` for generators, which never end.
    pub fn length(&self) -> Option<Duration> {
        self.length_s()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }

    fn length_s(&self) -> Option<f64> {
        match &self.source {
            Source::Csv(c) => Some(c.length()),
            Source::Sum(parts) => parts.iter().filter_map(Trace::length_s).reduce(f64::max),
            _ => None,
        }
    }

    /// Whether the demand carries a processing time (needed by `{ kind = "trace" }`
    /// durations).
    pub fn provides_processing_time(&self) -> bool {
        self.processing.is_some()
            || match &self.source {
                Source::Csv(c) => c.has_processing(),
                Source::Sum(parts) => parts.iter().any(Trace::provides_processing_time),
                _ => false,
            }
    }
}

/// The sum of the parts' rates at `t`, and their rate-weighted processing time.
fn sum(parts: &mut [Trace], t: f64) -> Result<(f64, Option<f64>), TraceError> {
    let mut rate = 0.0;
    let mut weighted = 0.0;
    let mut weight = 0.0;
    let mut first = None;
    for p in parts {
        let d = p.demand_at(t)?;
        rate += d.rate;
        if let Some(pt) = d.processing_time_s {
            first.get_or_insert(pt);
            weighted += d.rate * pt;
            weight += d.rate;
        }
    }
    let processing = if weight > 0.0 {
        Some(weighted / weight)
    } else {
        first
    };
    Ok((rate, processing))
}

impl Walk {
    /// The walk's value at `t` (moves made up to `t`).
    fn at(&mut self, t: f64) -> f64 {
        let due = (t / self.every).floor() as u64;
        while self.moves < due {
            self.moves += 1;
            let z = inverse_normal(unit_open(&mut self.rng));
            self.value = (self.value + self.step_sd * z).clamp(self.min, self.max);
        }
        self.value
    }
}
