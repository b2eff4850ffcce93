//! The configuration fixtures: every `fixtures/config/valid/*.toml` compiles, every
//! `fixtures/config/invalid/*.toml` fails with exactly the text of its sibling
//! `*.expected` file, and every key the compiler accepts is documented in
//! `docs/config.md`.
//!
//! The environment is a fixed map (never the process environment). Run with
//! `UPDATE_EXPECT=1` to rewrite the `*.expected` files from the current output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan::config::{self, Config, LogFormat, schema};
use capstan_core::planner::Fallback;
use capstan_core::policy::{Adjustment, Growth, Policy, TrackingMode};
use capstan_sources::{SourceKind, ValueKind};
use capstan_targets::TargetSpec;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The only environment the fixtures see.
fn env(name: &str) -> Option<String> {
    match name {
        "API_TOKEN" => Some("t0ken-for-tests".to_owned()),
        "API_HOST" => Some("metrics.example.test:8443".to_owned()),
        "WORKER_DIR" => Some("/srv/worker".to_owned()),
        _ => None,
    }
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    capstan_testkit::files::with_extension(dir, "toml")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

fn compile_fixture(path: &Path) -> Result<Config, config::ConfigErrors> {
    let text = std::fs::read_to_string(path).expect("readable fixture");
    config::compile(&text, &file_name(path), &env)
}

fn valid(name: &str) -> Config {
    let path = repo().join("fixtures/config/valid").join(name);
    match compile_fixture(&path) {
        Ok(c) => c,
        Err(e) => panic!("{name} should compile:\n{e}"),
    }
}

#[test]
fn every_valid_fixture_compiles() {
    let files = toml_files(&repo().join("fixtures/config/valid"));
    assert!(files.len() >= 5, "expected at least 5 valid fixtures");
    let mut failures = Vec::new();
    for path in &files {
        if let Err(e) = compile_fixture(path) {
            failures.push(format!("{}:\n{e}", file_name(path)));
        }
    }
    assert!(
        failures.is_empty(),
        "valid fixtures failed:\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn every_invalid_fixture_fails_with_its_expected_text() {
    let dir = repo().join("fixtures/config/invalid");
    let update = std::env::var_os("UPDATE_EXPECT").is_some_and(|v| v == "1");
    let files = toml_files(&dir);
    assert!(files.len() >= 12, "expected at least 12 invalid fixtures");
    let mut failures = Vec::new();
    for path in &files {
        let name = file_name(path);
        let actual = match compile_fixture(path) {
            Ok(_) => {
                failures.push(format!("{name}: compiled, but it should not"));
                continue;
            }
            Err(e) => format!("{e}\n"),
        };
        let expected_path = path.with_extension("expected");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{name}: errors differ\n--- expected\n{expected}--- actual\n{actual}"
            )),
            Err(_) => failures.push(format!(
                "{name}: no {} (run with UPDATE_EXPECT=1 to create it)\n--- actual\n{actual}",
                file_name(&expected_path)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_fixtures_cover_the_required_cases() {
    // Each required case, with a fragment its expected text must contain.
    let cases = [
        ("unknown_key", "(did you mean `interval`?)"),
        ("two_errors", "dry_run"),
        ("bad_duration", "bad duration"),
        ("unknown_source", "unknown source \"queu\""),
        ("min_greater_than_max", "min (5) is greater than max (3)"),
        ("step_gap", "leaves a gap"),
        ("bad_cron", "bad cron expression"),
        ("bad_timezone", "unknown time zone"),
        ("syntax_error", "TOML syntax error"),
        (
            "missing_env",
            "environment variable `NOT_SET_ANYWHERE` is not set",
        ),
        (
            "wrong_type",
            "expected a duration string like \"30s\", found integer 30",
        ),
        ("unknown_policy_kind", "unknown policy kind"),
    ];
    let dir = repo().join("fixtures/config/invalid");
    for (name, fragment) in cases {
        let expected = std::fs::read_to_string(dir.join(format!("{name}.expected")))
            .unwrap_or_else(|e| panic!("{name}.expected: {e}"));
        assert!(
            expected.contains(fragment),
            "{name}.expected lacks {fragment:?}:\n{expected}"
        );
    }
    let two = std::fs::read_to_string(dir.join("two_errors.expected")).unwrap();
    assert_eq!(
        two.lines().count(),
        2,
        "two_errors reports both errors:\n{two}"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let dir = repo().join("fixtures/config/invalid");
    for path in toml_files(&dir) {
        if let Err(e) = compile_fixture(&path) {
            let text = e.to_string();
            assert!(
                !text.contains("t0ken-for-tests"),
                "{}: {text}",
                file_name(&path)
            );
        }
    }
    // A bad value that came from the environment is not shown either.
    let text = r#"
[sources.a]
kind = "http"
url = "${API_TOKEN}"
[[services]]
name = "w"
max = 1
interval = "${API_TOKEN}"
target = { kind = "process", command = ["x"] }
[[services.policies]]
kind = "target_tracking"
metric = "a"
mode = "total"
target = 1
"#;
    let err = config::compile(text, "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("t0ken"), "{err}");
    assert!(
        err.contains("bad URL (a value from the environment, not shown)"),
        "{err}"
    );
    assert!(
        err.contains("bad duration (a value from the environment, not shown)"),
        "{err}"
    );
}

#[test]
fn minimal_fixture_takes_the_documented_defaults() {
    let c = valid("minimal.toml");
    assert_eq!(c.log, config::LogSpec::default());
    let s = &c.sources[0];
    assert_eq!(s.name, "queue");
    assert_eq!(s.interval, Duration::from_secs(5));
    assert_eq!(
        s.timeout,
        Duration::from_secs(5),
        "timeout = min(interval, 10s)"
    );
    assert_eq!(s.max_age, Duration::from_secs(15), "max_age = 3 × interval");
    assert_eq!(
        s.retention,
        Duration::from_secs(80),
        "retention = (the policy's 15 scale-in datapoints + 1) × interval"
    );
    assert_eq!(s.value, ValueKind::Count);
    assert_eq!(s.retries, 2, "two retries within the interval");
    let svc = &c.services[0];
    assert_eq!(svc.name, "worker");
    assert_eq!(svc.engine.service, "worker");
    assert_eq!(svc.interval, Duration::from_secs(10));
    let p = &svc.engine.planner;
    assert_eq!((p.bounds.min, p.bounds.max), (1, 4));
    assert_eq!(p.cooldown.out, Duration::from_secs(30));
    assert_eq!(p.cooldown.r#in, Duration::from_secs(60));
    assert_eq!(p.stabilization, Duration::from_secs(60));
    assert_eq!(p.fallback, Fallback::Hold);
    assert!(p.rate_limits.out.is_none() && p.rate_limits.r#in.is_none());
    assert!(!p.dry_run);
    let TargetSpec::Process(t) = &svc.target else {
        panic!("expected a process target");
    };
    assert_eq!(t.command, vec!["./worker.sh"]);
    assert_eq!(t.stop_timeout, Duration::from_secs(10));
    assert_eq!(t.restart_delay, Duration::from_secs(1));
    assert_eq!(t.workdir, None);
    let policy = &svc.engine.policies[0];
    assert_eq!(policy.name, "target_tracking#0");
    let Policy::TargetTracking(tt) = &policy.policy else {
        panic!("expected target tracking");
    };
    assert_eq!(tt.mode, TrackingMode::Total);
    assert_eq!(tt.target, 100.0);
    assert_eq!(tt.tolerance, 0.1);
    assert_eq!((tt.datapoints.out, tt.datapoints.r#in), (3, 15));
    assert!(!tt.disable_scale_in);
}

#[test]
fn redis_fixture_sets_retries() {
    let c = valid("redis.toml");
    let retries: Vec<(&str, u32)> = c
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.retries))
        .collect();
    assert!(retries.contains(&("jobs", 4)), "{retries:?}");
    assert!(retries.contains(&("events_lag", 0)), "{retries:?}");
}

#[test]
fn planner_knobs_fixture_sets_every_knob() {
    let c = valid("planner_knobs.toml");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "capstan=debug,info");
    let s = &c.sources[0];
    assert_eq!(s.timeout, Duration::from_millis(500));
    let SourceKind::Command(cmd) = &s.kind else {
        panic!("expected a command source");
    };
    assert_eq!(cmd.env["LC_ALL"], "C");
    let svc = &c.services[0];
    assert_eq!(svc.interval, Duration::from_secs(5));
    let p = &svc.engine.planner;
    assert!(p.dry_run);
    assert_eq!((p.bounds.min, p.bounds.max), (2, 10));
    assert_eq!(p.cooldown.out, Duration::from_secs(45));
    assert_eq!(p.cooldown.r#in, Duration::from_secs(120));
    assert_eq!(p.stabilization, Duration::from_secs(180));
    let out = p.rate_limits.out.unwrap();
    assert_eq!(
        (out.tasks, out.percent, out.period),
        (Some(4), Some(100.0), Duration::from_secs(60))
    );
    let r#in = p.rate_limits.r#in.unwrap();
    assert_eq!(
        (r#in.tasks, r#in.percent, r#in.period),
        (Some(2), None, Duration::from_secs(90))
    );
    assert_eq!(p.fallback, Fallback::LastKnownFor(Duration::from_secs(300)));
    let TargetSpec::Process(t) = &svc.target else {
        panic!("expected a process target");
    };
    assert_eq!(t.command, vec!["./worker.sh", "--fast"]);
    assert_eq!(t.env["MODE"], "fast");
    assert_eq!(t.workdir.as_deref(), Some(Path::new("/srv/worker")));
    assert_eq!(t.stop_timeout, Duration::from_secs(30));
    assert_eq!(t.restart_delay, Duration::from_secs(2));
    let other = &c.services[1].engine.planner;
    assert_eq!(other.fallback, Fallback::Tasks(2));
    let r#in = other.rate_limits.r#in.unwrap();
    assert_eq!(
        (r#in.tasks, r#in.percent, r#in.period),
        (None, Some(50.0), Duration::from_secs(60))
    );
}

#[test]
fn env_interpolation_fixture_reads_the_given_environment() {
    let c = valid("env_interpolation.toml");
    let SourceKind::Http(h) = &c.sources[0].kind else {
        panic!("expected an http source");
    };
    assert_eq!(h.url, "https://metrics.example.test:8443/stats");
    assert_eq!(h.headers["Authorization"], "Bearer t0ken-for-tests");
    assert_eq!(h.headers["Accept"], "application/json");
    assert_eq!(h.pointer, "/queue/depth");
    let SourceKind::Command(cmd) = &c.sources[1].kind else {
        panic!("expected a command source");
    };
    assert_eq!(cmd.command[2], "echo ${DEPTH:-0}", "$${{ is a literal ${{");
    let TargetSpec::Process(t) = &c.services[0].target else {
        panic!("expected a process target");
    };
    assert_eq!(t.workdir.as_deref(), Some(Path::new("/srv/worker")));
    assert_eq!(t.env["TOKEN"], "t0ken-for-tests");
    assert!(!format!("{c:?}").contains("t0ken-for-tests"));
}

#[test]
fn step_fixture_keeps_bands_and_adjustments() {
    let c = valid("step.toml");
    let policies = &c.services[0].engine.policies;
    let Policy::Step(cpu) = &policies[0].policy else {
        panic!("expected step");
    };
    let out = cpu.out.as_ref().unwrap();
    assert_eq!((out.threshold, out.datapoints), (60.0, 2));
    assert_eq!(out.bands.len(), 2);
    assert_eq!((out.bands[1].lower, out.bands[1].upper), (Some(10.0), None));
    assert_eq!(out.bands[1].adjustment, Adjustment::Change(3));
    let Policy::Step(req) = &policies[1].policy else {
        panic!("expected step");
    };
    let r#in = req.r#in.as_ref().unwrap();
    assert!(req.out.is_none());
    assert_eq!(r#in.bands.len(), 4);
    assert_eq!(
        (r#in.bands[3].lower, r#in.bands[3].upper),
        (None, Some(-90.0))
    );
    assert_eq!(r#in.bands[3].adjustment, Adjustment::Change(-16));
    let Policy::Step(pct) = &policies[2].policy else {
        panic!("expected step");
    };
    assert_eq!(pct.min_adjustment, Some(2));
    assert_eq!(
        pct.out.as_ref().unwrap().bands[0].adjustment,
        Adjustment::Percent(30.0)
    );
    assert_eq!(
        pct.r#in.as_ref().unwrap().bands[0].adjustment,
        Adjustment::Exact(2)
    );
}

#[test]
fn threshold_and_scheduled_fixtures() {
    let c = valid("threshold.toml");
    let Policy::Threshold(t) = &c.services[0].engine.policies[0].policy else {
        panic!("expected threshold");
    };
    assert_eq!(t.metrics.len(), 2);
    assert_eq!(t.metrics[1].max, 80.5);
    assert_eq!((t.datapoints.out, t.datapoints.r#in), (4, 10));
    assert_eq!(
        (t.step_out, t.step_in, t.growth),
        (2, 1, Growth::Exponential)
    );
    let j = t.jitter.unwrap();
    assert_eq!((j.fraction, j.seed), (0.2, 7));

    let c = valid("scheduled.toml");
    let policies = &c.services[0].engine.policies;
    assert_eq!(policies[0].name, "office-hours");
    assert_eq!(policies[1].name, "scheduled#1");
    let Policy::Scheduled(s) = &policies[0].policy else {
        panic!("expected scheduled");
    };
    assert_eq!(s.timezone.iana_name(), Some("Europe/Paris"));
    assert_eq!(s.actions[0].cron_text, "0 8 * * MON-FRI");
    assert_eq!(s.actions[0].duration, Duration::from_secs(36_000));
    assert_eq!((s.actions[0].min, s.actions[0].max), (Some(4), Some(20)));
    assert_eq!(s.actions[1].exact, Some(1));
    let Policy::Scheduled(daily) = &policies[1].policy else {
        panic!("expected scheduled");
    };
    assert_eq!(daily.timezone.iana_name(), Some("UTC"));
}

/// The sections of `docs/config.md` whose heading line contains `heading`, as text.
fn doc_section<'d>(doc: &'d str, heading: &str) -> Vec<&'d str> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut sections = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let level = line.chars().take_while(|c| *c == '#').count();
        if level == 0 || !line[level..].starts_with(' ') || !line.contains(heading) {
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| {
                let l2 = l.chars().take_while(|c| *c == '#').count();
                l2 > 0 && l2 <= level && l[l2..].starts_with(' ')
            })
            .map_or(lines.len(), |p| i + 1 + p);
        let start = doc.lines().take(i).map(|l| l.len() + 1).sum::<usize>();
        let stop = doc
            .lines()
            .take(end)
            .map(|l| l.len() + 1)
            .sum::<usize>()
            .min(doc.len());
        sections.push(&doc[start..stop]);
    }
    sections
}

#[test]
fn every_accepted_key_is_documented() {
    let doc = std::fs::read_to_string(repo().join("docs/config.md")).unwrap();
    let mut missing = Vec::new();
    for table in schema::ALL {
        let sections = doc_section(&doc, table.section);
        if sections.is_empty() {
            missing.push(format!("no section headed {:?}", table.section));
            continue;
        }
        for key in table.keys {
            // A row of a reference table: `| `key` | ...`.
            let row = format!("| `{key}`");
            if !sections
                .iter()
                .any(|s| s.lines().any(|l| l.starts_with(&row)))
            {
                missing.push(format!("key `{key}` has no row under {:?}", table.section));
            }
        }
    }
    for values in schema::ALL_VALUES {
        let sections = doc_section(&doc, values.section);
        for value in values.keys {
            let quoted = format!("`\"{value}\"`");
            if !sections.iter().any(|s| s.contains(&quoted)) {
                missing.push(format!(
                    "value {quoted} is not mentioned under {:?}",
                    values.section
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/config.md is out of date:\n{}",
        missing.join("\n")
    );
}
