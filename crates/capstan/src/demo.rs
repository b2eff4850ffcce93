//! `capstan demo`: a scenario played in accelerated real time, its decisions shown as
//! they happen, so a newcomer sees the loop work.
//!
//! Owns what `simulate` does not: the window of the scenario that is shown (runs are
//! simulated from the start at full speed up to the window, then paced), the pacing
//! ([`Pacer`]: simulated time ÷ speed onto the wall clock), the live state of every
//! run ([`Board`]) and its rendering as lines, and the terminal around them (redraws,
//! the cursor, Ctrl-C). The runs themselves are [`capstan_sim::run::run`]'s, watched
//! through its [`StepObserver`] hook: the observer is called from each run's thread
//! after every simulated step and sleeps there until the step is due on the wall
//! clock, which paces the run.
//!
//! On a terminal the board is redrawn a few times a second; anywhere else (pipes, CI,
//! tests) one line per action or change of decision is printed as it happens. Either
//! way the usual summary table ends the output.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use capstan_core::clock::{self, Clock, SystemClock};
use capstan_sim::baseline::Baseline;
use capstan_sim::metric::SimMetric;
use capstan_sim::record::StepRecord;
use capstan_sim::run::{RunOptions, StepObserver};
use jiff::Timestamp;

use crate::config;
use crate::simulate::{self, Prepared};

/// The scenario `capstan demo` plays when none is named: its bursts show a whole
/// scale-out and scale-in within minutes.
pub const DEFAULT_SCENARIO: &str = "redis-burst";

/// Simulated seconds per wall second by default: a simulated minute per second.
pub const DEFAULT_SPEED: f64 = 60.0;

/// How much simulated time is shown by default: an hour, a minute of wall time at the
/// default speed.
pub const DEFAULT_LENGTH: Duration = Duration::from_secs(3600);

/// At most this many recent actions are listed below the table.
pub const ACTIONS_SHOWN: usize = 8;

/// How often the terminal is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// Terminal width assumed when it cannot be read.
const FALLBACK_WIDTH: usize = 120;

/// Terminal height assumed when it cannot be read.
const FALLBACK_HEIGHT: usize = 24;

/// ANSI: hide the cursor.
const HIDE_CURSOR: &str = "\x1b[?25l";

/// ANSI: show the cursor.
const SHOW_CURSOR: &str = "\x1b[?25h";

/// The part of a scenario that is shown: simulated time `from` .. `from + length`
/// since the scenario's start. Everything before `from` is simulated at full speed and
/// not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Where showing (and pacing) starts.
    pub from: Duration,
    /// How much simulated time is shown.
    pub length: Duration,
}

impl Window {
    /// The run's whole simulated length.
    pub fn end(&self) -> Duration {
        self.from.saturating_add(self.length)
    }
}

/// The window shown of a shipped scenario (by name) when `--from` and `--duration`
/// are not given: its most telling hour. A scenario file starts at 0.
pub fn default_window(shipped: Option<&str>) -> Window {
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let from = match shipped {
        // The first burst (40 jobs/s for 5 minutes at 3:00): out and back in, for
        // capstan and both AWS baselines, within the hour.
        Some("redis-burst") => minutes(175),
        // The 10:00 spike on top of the morning rise.
        Some("sqs-backlog") => minutes(590),
        // The 11:00 surge.
        Some("blu-insights") => minutes(650),
        // The evening: AWS scales in, blind to the sessions it cuts; capstan keeps
        // every task that still has one.
        Some("rdp-sessions") => minutes(1070),
        // The 10:00 burst: the service grows past its hosts; capstan's reservation
        // headroom places the new tasks at once, managed scaling adds hosts only once
        // tasks wait for room.
        Some("ec2-cluster") => minutes(590),
        _ => Duration::ZERO,
    };
    Window {
        from,
        length: DEFAULT_LENGTH,
    }
}

/// Parses `--speed`: a finite number greater than 0.
pub fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err("--speed must be a finite number greater than 0 (simulated seconds per second, e.g. 60)".to_owned()),
    }
}

/// Parses `--duration`: seconds (`1800`) or a duration (`30m`, `1h30m`), more than 0.
pub fn parse_length(text: &str) -> Result<Duration, String> {
    let d = parse_offset(text).map_err(|e| format!("--duration: {e}"))?;
    if d.is_zero() {
        return Err("--duration must be more than 0".to_owned());
    }
    Ok(d)
}

/// Parses `--from`: seconds (`10500`) or a duration (`2h55m`), 0 or more.
pub fn parse_from(text: &str) -> Result<Duration, String> {
    parse_offset(text).map_err(|e| format!("--from: {e}"))
}

/// Seconds, or a duration as in configuration files.
fn parse_offset(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "number too large".to_owned());
    }
    config::duration::parse(t)
}

/// What to play.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// A shipped scenario (default [`DEFAULT_SCENARIO`]).
    pub scenario: Option<String>,
    /// A scenario file instead.
    pub file: Option<PathBuf>,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Where showing starts (default: [`default_window`]).
    pub from: Option<Duration>,
    /// How much simulated time is shown (default: [`default_window`]).
    pub duration: Option<Duration>,
    /// Replace the scenario's seed.
    pub seed: Option<u64>,
}

/// Maps simulated time onto the wall clock: the step that ends `elapsed` simulated
/// seconds after the scenario's start is due `(elapsed − from) ÷ speed` wall seconds
/// after the window started (the first time a run reached `from`). Before `from`
/// nothing waits.
#[derive(Debug)]
pub struct Pacer<C> {
    clock: C,
    speed: f64,
    /// Where pacing starts, simulated seconds.
    from: f64,
    /// The wall instant at which the first run reached `from`.
    start: OnceLock<Timestamp>,
}

/// The wall instant at which `shown` simulated seconds of the window are due, for a
/// window that started at `start` and plays at `speed`.
pub fn wall_at(start: Timestamp, shown: f64, speed: f64) -> Timestamp {
    let offset = Duration::try_from_secs_f64((shown / speed).max(0.0)).unwrap_or(Duration::MAX);
    clock::add(start, offset)
}

impl<C: Clock> Pacer<C> {
    /// Paces to `speed` simulated seconds per second from `from` on.
    pub fn new(clock: C, speed: f64, from: Duration) -> Self {
        Self {
            clock,
            speed,
            from: from.as_secs_f64(),
            start: OnceLock::new(),
        }
    }

    /// How long a run that has just simulated up to `elapsed` must wait to be on time;
    /// `None` when it is due already (or still before the window).
    pub fn delay(&self, elapsed: f64) -> Option<Duration> {
        if elapsed < self.from {
            return None;
        }
        let now = self.clock.now();
        let start = *self.start.get_or_init(|| now);
        let wait = clock::elapsed(now, wall_at(start, elapsed - self.from, self.speed));
        (!wait.is_zero()).then_some(wait)
    }
}

/// A run's latest step, as the table shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Snapshot {
    elapsed: f64,
    demand: f64,
    desired: u32,
    running: u32,
    pending: u32,
    metric: Option<f64>,
    target: Option<f64>,
}

/// One run's row.
#[derive(Debug, Clone)]
struct Row {
    name: String,
    /// The metric its main policy acts on, for the label.
    metric_name: Option<SimMetric>,
    last: Option<Snapshot>,
    /// Actions taken within the window.
    actions: u32,
    /// Sessions, requests and messages cut within the window.
    cut: u64,
    /// The latest decision sentence.
    decision: Option<String>,
    /// The latest decision printed (line mode), numbers masked.
    printed: Option<String>,
}

/// An action, for the list below the table.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionLine {
    /// Simulated seconds since the scenario's start.
    pub elapsed: f64,
    /// The run.
    pub run: String,
    /// Desired count before.
    pub from: u32,
    /// Desired count after.
    pub to: u32,
    /// Why (the decision's reason, without the action).
    pub reason: String,
}

/// The live state of every run, and its rendering.
#[derive(Debug, Clone)]
pub struct Board {
    title: String,
    window: Window,
    rows: Vec<Row>,
    /// The latest actions, newest last.
    actions: VecDeque<ActionLine>,
}

impl Board {
    /// A board titled `title` for `runs` (name, and the metric its main policy acts
    /// on), in the order of the report.
    pub fn new(title: &str, window: Window, runs: Vec<(String, Option<SimMetric>)>) -> Self {
        Self {
            title: title.to_owned(),
            window,
            rows: runs
                .into_iter()
                .map(|(name, metric_name)| Row::new(name, metric_name))
                .collect(),
            actions: VecDeque::new(),
        }
    }

    /// Takes in the step `rec` of run `run`. Returns the lines to print where nothing
    /// is redrawn: within the window, one per action and one per change of decision
    /// (numbers aside: a hold whose figures move is the same decision), each as
    /// `time  run  sentence`.
    pub fn update(&mut self, run: &str, rec: &StepRecord) -> Vec<String> {
        let index = match self.rows.iter().position(|r| r.name == run) {
            Some(i) => i,
            None => {
                self.rows.push(Row::new(run.to_owned(), None));
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[index];
        row.last = Some(Snapshot {
            elapsed: rec.elapsed_s,
            demand: rec.demand,
            desired: rec.desired,
            running: rec.running,
            pending: rec.pending,
            metric: rec.metric,
            target: rec.metric_target,
        });
        if let Some(d) = &rec.decision {
            row.decision = Some(d.clone());
        }
        if rec.elapsed_s < self.window.from.as_secs_f64() {
            return Vec::new();
        }
        row.cut += rec.interrupted_sessions + rec.failed_requests + rec.interrupted_messages;
        let mut lines = Vec::new();
        let shape = rec.decision.as_deref().map(mask_numbers);
        if let Some((from, to)) = rec.action {
            row.actions += 1;
            let sentence = rec
                .decision
                .clone()
                .unwrap_or_else(|| format!("{from} → {to}"));
            lines.push(format!("{}  {run}  {sentence}", clock_time(rec.elapsed_s)));
            self.actions.push_back(ActionLine {
                elapsed: rec.elapsed_s,
                run: run.to_owned(),
                from,
                to,
                reason: rec
                    .decision
                    .as_deref()
                    .map(|d| reason_of(d, from, to))
                    .unwrap_or_default(),
            });
            while self.actions.len() > ACTIONS_SHOWN {
                self.actions.pop_front();
            }
        } else if let (Some(d), Some(s)) = (&rec.decision, &shape)
            && row.printed.as_ref() != Some(s)
        {
            lines.push(format!("{}  {run}  {d}", clock_time(rec.elapsed_s)));
        }
        if shape.is_some() {
            row.printed = shape;
        }
        lines
    }

    /// The board as lines, each at most `width` characters: the title, one row per
    /// run (simulated time, demand, desired/running (+pending), the metric against its
    /// target, actions and work cut (sessions, requests, messages) within the window,
    /// the latest decision), and the latest actions
    /// (as many as `height` leaves room for, at most [`ACTIONS_SHOWN`]).
    pub fn render(&self, width: usize, height: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let from = self.window.from.as_secs_f64();
        let slowest = self
            .rows
            .iter()
            .map(|r| r.last.map_or(0.0, |s| s.elapsed))
            .fold(f64::INFINITY, f64::min);
        let status = if slowest < from {
            format!(" · simulating up to {} at full speed…", clock_time(from))
        } else {
            String::new()
        };
        lines.push(format!("{}{status}", self.title));
        lines.push(String::new());
        let head = [
            "run",
            "time",
            "demand",
            "desired/running",
            "metric / target",
            "actions",
            "cut",
            "latest decision",
        ];
        let cells: Vec<[String; 8]> = self.rows.iter().map(Row::cells).collect();
        let mut widths = head.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: [&str; 8]| {
            let mut out = String::new();
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i == cells.len() - 1 {
                    out.push_str(c);
                } else if (1..=3).contains(&i) || i == 5 || i == 6 {
                    let _ = write!(out, "{c:>w$}  ");
                } else {
                    let _ = write!(out, "{c:<w$}  ");
                }
            }
            out
        };
        lines.push(line(head));
        for row in &cells {
            lines.push(line(row.each_ref().map(String::as_str)));
        }
        // Below the table: a blank line, "latest actions" and the actions, leaving
        // the terminal's last line free.
        let room = height.saturating_sub(lines.len() + 3);
        if room > 0 {
            lines.push(String::new());
            lines.push("latest actions".to_owned());
            if self.actions.is_empty() {
                lines.push("  (none yet)".to_owned());
            }
            let shown = self.actions.len().min(ACTIONS_SHOWN).min(room);
            let run_width = self
                .rows
                .iter()
                .map(|r| r.name.chars().count())
                .max()
                .unwrap_or(0);
            for a in self.actions.iter().skip(self.actions.len() - shown) {
                let change = format!("{} → {}", a.from, a.to);
                lines.push(format!(
                    "  {:>8}  {:<run_width$}  {change:<9}  {}",
                    clock_time(a.elapsed),
                    a.run,
                    a.reason
                ));
            }
        }
        lines.into_iter().map(|l| truncate(&l, width)).collect()
    }
}

impl Row {
    fn new(name: String, metric_name: Option<SimMetric>) -> Self {
        Self {
            name,
            metric_name,
            last: None,
            actions: 0,
            cut: 0,
            decision: None,
            printed: None,
        }
    }

    /// The table cells.
    fn cells(&self) -> [String; 8] {
        let dash = || "–".to_owned();
        let Some(s) = self.last else {
            return [
                self.name.clone(),
                dash(),
                dash(),
                dash(),
                dash(),
                self.actions.to_string(),
                self.cut.to_string(),
                dash(),
            ];
        };
        let tasks = if s.pending > 0 {
            format!("{}/{} (+{})", s.desired, s.running, s.pending)
        } else {
            format!("{}/{}", s.desired, s.running)
        };
        let metric = match (s.metric, s.target) {
            (None, _) => dash(),
            (Some(m), target) => {
                let mut out = String::new();
                if let Some(name) = self.metric_name {
                    let _ = write!(out, "{name} ");
                }
                out.push_str(&number(m));
                if let Some(t) = target {
                    let _ = write!(out, " / {}", number(t));
                }
                out
            }
        };
        [
            self.name.clone(),
            clock_time(s.elapsed),
            format!("{}/s", number(s.demand)),
            tasks,
            metric,
            self.actions.to_string(),
            self.cut.to_string(),
            self.decision.clone().unwrap_or_else(dash),
        ]
    }
}

/// Simulated seconds since the start as `h:mm:ss`.
pub fn clock_time(elapsed: f64) -> String {
    let s = elapsed.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A number in at most 4 significant figures or so: `812`, `40.5`, `0.83`.
fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `line` cut to `width` characters, the last one an ellipsis when it was cut.
pub fn truncate(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// The sentence with every number replaced by `#`: two decisions that differ only in
/// their figures are the same decision.
fn mask_numbers(sentence: &str) -> String {
    let mut out = String::with_capacity(sentence.len());
    let mut in_number = false;
    for c in sentence.chars() {
        let numeric = c.is_ascii_digit() || (in_number && c == '.');
        if numeric {
            if !in_number {
                out.push('#');
            }
        } else {
            out.push(c);
        }
        in_number = numeric;
    }
    out
}

/// The reason part of a decision sentence: capstan's `service: scale out 2 → 8 — WHY`
/// and AWS's `2 → 8: WHY` lose the action, which the list shows on its own.
fn reason_of(decision: &str, from: u32, to: u32) -> String {
    if let Some((_, why)) = decision.split_once(" — ") {
        return why.to_owned();
    }
    decision
        .strip_prefix(&format!("{from} → {to}: "))
        .unwrap_or(decision)
        .to_owned()
}

/// The observer given to the runner: keeps the board, prints lines (when not
/// redrawing) and paces every run.
struct Live {
    board: Mutex<Board>,
    pacer: Pacer<SystemClock>,
    /// Print [`Board::update`]'s lines (no terminal to redraw).
    print_lines: bool,
}

impl StepObserver for Live {
    fn on_step(&self, run: &str, record: &StepRecord) {
        {
            let mut board = self.board.lock().unwrap_or_else(PoisonError::into_inner);
            let lines = board.update(run, record);
            if self.print_lines && !lines.is_empty() {
                let mut out = std::io::stdout().lock();
                for line in lines {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        if let Some(wait) = self.pacer.delay(record.elapsed_s) {
            sleep(wait);
        }
    }
}

/// Waits on the wall clock: the demo is real time by definition.
#[allow(clippy::disallowed_methods)] // pacing to the wall clock is the point here
fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Terminal width and height.
fn terminal_size() -> (usize, usize) {
    match terminal_size::terminal_size() {
        Some((terminal_size::Width(w), terminal_size::Height(h))) => {
            (usize::from(w).max(20), usize::from(h).max(5))
        }
        None => (FALLBACK_WIDTH, FALLBACK_HEIGHT),
    }
}

/// Each run of `prepared` in report order, with the metric its main policy acts on.
fn runs_of(prepared: &Prepared) -> Vec<(String, Option<SimMetric>)> {
    let scenario = &prepared.scenario;
    let mut runs: Vec<(String, Option<SimMetric>)> = prepared
        .capstan
        .iter()
        .map(|c| (c.name.clone(), scenario.plot.map(|p| p.metric)))
        .collect();
    for b in &scenario.baselines {
        let metric = Baseline::new(&b.name, &b.spec).ok().map(|b| b.metric().0);
        runs.push((b.name.clone(), metric));
    }
    runs
}

/// Plays the scenario: on a terminal a board redrawn a few times a second, elsewhere
/// one line per action or change of decision; then the summary table. Errors are
/// the simulator's (an unknown scenario is named as by `capstan simulate`).
pub fn run(options: &DemoOptions) -> Result<(), String> {
    let shipped_name = match &options.file {
        Some(_) => None,
        None => Some(options.scenario.as_deref().unwrap_or(DEFAULT_SCENARIO)),
    };
    let request = simulate::Request {
        scenario: shipped_name.map(str::to_owned),
        file: options.file.clone(),
        ..simulate::Request::default()
    };
    let prepared = simulate::prepare(&request)?;
    let default = default_window(shipped_name);
    let window = Window {
        from: options.from.unwrap_or(default.from),
        length: options.duration.unwrap_or(default.length),
    };
    let scenario = &prepared.scenario;
    let seed = options.seed.unwrap_or(scenario.seed);
    let title = format!(
        "{} (seed {seed}) · {}× real time · showing {} → {}",
        scenario.name,
        options.speed,
        clock_time(window.from.as_secs_f64()),
        clock_time(window.end().as_secs_f64()),
    );
    let tty = std::io::stdout().is_terminal();
    let live = Arc::new(Live {
        board: Mutex::new(Board::new(&title, window, runs_of(&prepared))),
        pacer: Pacer::new(SystemClock, options.speed, window.from),
        print_lines: !tty,
    });
    let run_options = RunOptions {
        seed: options.seed,
        duration: Some(window.end()),
        observer: Some(live.clone()),
        ..RunOptions::default()
    };
    let result = if tty {
        with_screen(&live, || {
            capstan_sim::run::run(scenario, &prepared.capstan, &run_options)
        })
    } else {
        println!("capstan demo: {title}");
        if !window.from.is_zero() {
            println!(
                "(0:00:00 → {} simulated at full speed, not shown)",
                clock_time(window.from.as_secs_f64())
            );
        }
        capstan_sim::run::run(scenario, &prepared.capstan, &run_options)
    };
    let summary = result.map_err(|e| e.to_string())?;
    println!();
    println!(
        "summary of the whole run, 0:00:00 → {}:",
        clock_time(window.end().as_secs_f64())
    );
    println!("{}", capstan_sim::report::table(&summary));
    Ok(())
}

/// Runs `body` while the board is redrawn on the terminal, the cursor hidden; Ctrl-C
/// shows the cursor again and exits with status 130.
fn with_screen<T>(live: &Arc<Live>, body: impl FnOnce() -> T) -> T {
    watch_signals();
    {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{HIDE_CURSOR}");
        let _ = out.flush();
    }
    let (stop, stopped) = mpsc::channel::<()>();
    let drawer = {
        let live = live.clone();
        std::thread::spawn(move || {
            let mut drawn = draw(&live, 0);
            loop {
                let last = !matches!(
                    stopped.recv_timeout(REDRAW_EVERY),
                    Err(RecvTimeoutError::Timeout)
                );
                drawn = draw(&live, drawn);
                if last {
                    break;
                }
            }
        })
    };
    let result = body();
    let _ = stop.send(());
    let _ = drawer.join();
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{SHOW_CURSOR}");
    let _ = out.flush();
    result
}

/// From now on SIGINT (Ctrl-C) and SIGTERM show the cursor again and exit with status
/// 130. The handlers are in place when this returns; if they cannot be installed the
/// signals keep their default action.
fn watch_signals() {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let signal = {
        let _context = runtime.enter();
        crate::daemon::shutdown_signal()
    };
    let Ok(signal) = signal else {
        return;
    };
    std::thread::spawn(move || {
        runtime.block_on(signal);
        // Holding stdout: no redraw is half done, and none follows.
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{SHOW_CURSOR}\ninterrupted\n");
        let _ = out.flush();
        std::process::exit(130);
    });
}

/// Redraws the board over the `previous` lines drawn; returns how many it drew.
fn draw(live: &Live, previous: usize) -> usize {
    let (width, height) = terminal_size();
    // One column spare: a line that fills the width would wrap on some terminals.
    let lines = live
        .board
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .render(width.saturating_sub(1), height);
    let mut frame = String::new();
    if previous > 0 {
        // To the start of the first line drawn, then clear to the end of the screen.
        let _ = write!(frame, "\x1b[{previous}F\x1b[J");
    }
    for line in &lines {
        frame.push_str(line);
        frame.push('\n');
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(frame.as_bytes());
    let _ = out.flush();
    lines.len()
}

#[cfg(test)]
mod tests {
    use capstan_core::clock::VirtualClock;
    use capstan_sim::metric::Frame;

    use super::*;

    fn rec(
        elapsed: f64,
        desired: u32,
        action: Option<(u32, u32)>,
        decision: Option<&str>,
    ) -> StepRecord {
        StepRecord {
            at: Timestamp::UNIX_EPOCH,
            elapsed_s: elapsed,
            dt_s: 1.0,
            demand: 40.0,
            needed: 38.0,
            desired,
            running: 2,
            pending: desired.saturating_sub(2),
            stopping: 0,
            hosts: None,
            metric: Some(812.4),
            metric_target: Some(500.0),
            frame: Frame::default(),
            completed: 0,
            failed_requests: 0,
            interrupted_sessions: 0,
            interrupted_messages: 0,
            slo_violated: false,
            action,
            decision: decision.map(str::to_owned),
        }
    }

    fn board() -> Board {
        Board::new(
            "redis-burst (seed 0)",
            Window {
                from: Duration::from_secs(100),
                length: Duration::from_secs(600),
            },
            vec![
                ("capstan".into(), Some(SimMetric::QueueDepth)),
                (
                    "aws-target-tracking".into(),
                    Some(SimMetric::BacklogPerTask),
                ),
            ],
        )
    }

    #[test]
    fn wall_time_is_simulated_time_over_speed() {
        let start = Timestamp::UNIX_EPOCH;
        assert_eq!(
            clock::elapsed(start, wall_at(start, 120.0, 60.0)),
            Duration::from_secs(2)
        );
        assert_eq!(wall_at(start, 0.0, 60.0), start);
        assert_eq!(
            clock::elapsed(start, wall_at(start, 1800.0, 1_000_000.0)),
            Duration::from_micros(1800)
        );
        // Absurdly slow saturates instead of overflowing.
        assert_eq!(wall_at(start, 1.0, f64::MIN_POSITIVE), Timestamp::MAX);
    }

    #[test]
    fn pacer_waits_only_inside_the_window_and_when_ahead() {
        let clock = VirtualClock::at_epoch();
        let pacer = Pacer::new(clock.clone(), 60.0, Duration::from_secs(100));
        // Before the window: full speed.
        assert_eq!(pacer.delay(10.0), None);
        assert_eq!(pacer.delay(99.0), None);
        // The window starts now; 60 simulated seconds are due a second later.
        assert_eq!(pacer.delay(100.0), None);
        assert_eq!(pacer.delay(160.0), Some(Duration::from_secs(1)));
        clock.advance(Duration::from_millis(400));
        assert_eq!(pacer.delay(160.0), Some(Duration::from_millis(600)));
        // A run that is behind does not wait.
        clock.advance(Duration::from_secs(5));
        assert_eq!(pacer.delay(160.0), None);
        assert_eq!(pacer.delay(400.0), None);
        assert_eq!(pacer.delay(430.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn lines_for_actions_and_changed_decisions_within_the_window() {
        let mut b = board();
        let hold = "worker: hold at 2 — queue-per-task holds (queue 3 total / 50 per task)";
        // Before the window: nothing printed, but the row follows.
        assert!(
            b.update("capstan", &rec(50.0, 2, None, Some(hold)))
                .is_empty()
        );
        // The first decision in the window is printed, the same one with other figures
        // is not.
        assert_eq!(
            b.update("capstan", &rec(105.0, 2, None, Some(hold))),
            ["0:01:45  capstan  ".to_owned() + hold]
        );
        let hold2 = hold.replace("queue 3", "queue 17");
        assert!(
            b.update("capstan", &rec(110.0, 2, None, Some(&hold2)))
                .is_empty()
        );
        assert!(b.update("capstan", &rec(111.0, 2, None, None)).is_empty());
        let out = "worker: scale out 2 → 8 — burst-alert asked 8 (queue 812 above 500)";
        assert_eq!(
            b.update("capstan", &rec(115.0, 8, Some((2, 8)), Some(out))),
            ["0:01:55  capstan  ".to_owned() + out]
        );
        // Back to holding is a change.
        assert_eq!(
            b.update("capstan", &rec(120.0, 8, None, Some(hold))).len(),
            1
        );
        let aws = "2 → 5: AlarmHigh: 3 of 3 datapoints above 50";
        assert_eq!(
            b.update(
                "aws-target-tracking",
                &rec(300.0, 5, Some((2, 5)), Some(aws))
            ),
            ["0:05:00  aws-target-tracking  ".to_owned() + aws]
        );
        assert_eq!(b.actions.len(), 2);
        assert_eq!(
            b.actions[0].reason,
            "burst-alert asked 8 (queue 812 above 500)"
        );
        assert_eq!(b.actions[1].reason, "AlarmHigh: 3 of 3 datapoints above 50");
    }

    #[test]
    fn renders_one_row_per_run_and_the_latest_actions() {
        let mut b = board();
        let out = "worker: scale out 2 → 8 — burst-alert asked 8 (queue 812 above 500)";
        b.update("capstan", &rec(115.0, 8, Some((2, 8)), Some(out)));
        let lines = b.render(200, 40);
        let text = lines.join("\n");
        assert!(
            lines[0].starts_with("redis-burst (seed 0) · simulating up to 0:01:40"),
            "{text}"
        );
        assert!(lines[2].starts_with("run "), "{text}");
        assert!(lines[2].contains("desired/running"), "{text}");
        let row = &lines[3];
        for part in [
            "capstan",
            "0:01:55",
            "40.0/s",
            "8/2 (+6)",
            "queue_depth 812 / 500",
            out,
        ] {
            assert!(row.contains(part), "{part} not in {row}");
        }
        assert!(lines[4].starts_with("aws-target-tracking"), "{text}");
        assert!(lines[4].contains('–'), "no step yet: {text}");
        assert_eq!(lines[6], "latest actions");
        assert!(
            lines[7].contains("0:01:55  capstan") && lines[7].contains("2 → 8"),
            "{text}"
        );
        assert!(
            lines[7].ends_with("burst-alert asked 8 (queue 812 above 500)"),
            "{text}"
        );
        // Once every run is in the window the status goes.
        let mut cut = rec(116.0, 2, None, None);
        cut.interrupted_sessions = 3;
        cut.failed_requests = 4;
        b.update("aws-target-tracking", &cut);
        let lines = b.render(200, 40);
        assert_eq!(lines[0], "redis-burst (seed 0)");
        // Work cut is counted within the window only.
        cut.elapsed_s = 50.0;
        b.update("aws-target-tracking", &cut);
        let lines = b.render(200, 40);
        let cells: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(cells[cells.len() - 3..], ["0", "7", "–"], "{lines:#?}");
    }

    #[test]
    fn rendering_fits_the_terminal() {
        let mut b = board();
        for i in 0..20 {
            let e = 100.0 + f64::from(i);
            b.update(
                "capstan",
                &rec(
                    e,
                    3,
                    Some((2, 3)),
                    Some("worker: scale out 2 → 3 — a very long reason indeed"),
                ),
            );
        }
        let lines = b.render(40, 40);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:#?}");
        assert!(lines[3].ends_with('…'), "{lines:#?}");
        // At most ACTIONS_SHOWN, the newest.
        assert_eq!(lines.len(), 7 + ACTIONS_SHOWN);
        assert!(lines.last().unwrap().contains("0:01:59"), "{lines:#?}");
        // A short terminal keeps the table and shows fewer actions.
        assert_eq!(b.render(80, 12).len(), 12 - 1);
        assert_eq!(b.render(80, 6).len(), 5);
    }

    #[test]
    fn parses_flags_with_errors_naming_them() {
        assert_eq!(parse_speed("60"), Ok(60.0));
        assert_eq!(parse_speed("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN", "fast", ""] {
            let e = parse_speed(bad).unwrap_err();
            assert!(
                e.starts_with("--speed must be a finite number greater than 0"),
                "{e}"
            );
        }
        assert_eq!(parse_length("1800"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_length("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(
            parse_length("0").unwrap_err(),
            "--duration must be more than 0"
        );
        assert_eq!(
            parse_length("0s").unwrap_err(),
            "--duration must be more than 0"
        );
        assert!(
            parse_length("soon")
                .unwrap_err()
                .starts_with("--duration: ")
        );
        assert_eq!(parse_from("0"), Ok(Duration::ZERO));
        assert_eq!(parse_from("2h55m"), Ok(Duration::from_secs(10_500)));
        assert!(parse_from("-5").unwrap_err().starts_with("--from: "));
    }

    #[test]
    fn helpers() {
        assert_eq!(clock_time(0.0), "0:00:00");
        assert_eq!(clock_time(10_815.4), "3:00:15");
        assert_eq!(clock_time(90_000.0), "25:00:00");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(
            mask_numbers("hold at 12 (0.83 per task, 3 of 3)"),
            "hold at # (# per task, # of #)"
        );
        assert_eq!(number(812.4), "812");
        assert_eq!(number(40.04), "40.0");
        assert_eq!(number(0.833), "0.83");
        assert_eq!(
            default_window(Some("redis-burst")).from,
            Duration::from_secs(10_500)
        );
        assert_eq!(default_window(None).from, Duration::ZERO);
    }
}
