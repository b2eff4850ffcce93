//! The least-privilege IAM policy shipped in `deploy/iam-policy.json` holds exactly the
//! AWS operations capstan's SDK adapters call: every call made in
//! `crates/capstan-aws-sdk/src` (an operation is the first method called on a client
//! after `.client().await` or `.paced(..).await`) is allowed, and nothing else is.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The adapters, by file, with their IAM service prefix.
const ADAPTERS: [(&str, &str); 5] = [
    ("ecs.rs", "ecs"),
    ("autoscaling.rs", "autoscaling"),
    ("elb.rs", "elasticloadbalancing"),
    ("sqs.rs", "sqs"),
    ("cloudwatch.rs", "cloudwatch"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `describe_auto_scaling_groups` → `DescribeAutoScalingGroups`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The operations called in `text`: the zero-argument method right after
/// `.client().await` or `.paced(..).await`.
fn operations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices(".await") {
        let before = text[..at].trim_end();
        let on_client = before.ends_with(".client()")
            || before
                .rfind(".paced(")
                .is_some_and(|p| before.ends_with(')') && !before[p..].contains('\n'));
        if !on_client {
            continue;
        }
        let after = text[at + ".await".len()..].trim_start();
        let Some(rest) = after.strip_prefix('.') else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() && rest[name.len()..].starts_with("()") {
            out.push(name);
        }
    }
    out
}

/// The IAM actions the SDK adapters call.
fn called() -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for (file, prefix) in ADAPTERS {
        let path = root().join("crates/capstan-aws-sdk/src").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let found: Vec<String> = operations(&text)
            .iter()
            .map(|op| format!("{prefix}:{}", pascal(op)))
            .collect();
        assert!(!found.is_empty(), "no AWS call found in {}", path.display());
        actions.extend(found);
    }
    actions
}

/// The actions the shipped policy allows.
fn allowed() -> BTreeSet<String> {
    policy_actions("deploy/iam-policy.json")
}

/// The actions of the IAM policy at `path` (from the repository's root).
fn policy_actions(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{path}: {statement}");
        for action in statement["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(
                !action.contains('*'),
                "{path}: no wildcard actions: {action}"
            );
            assert!(actions.insert(action.to_owned()), "{path}: {action} twice");
        }
    }
    actions
}

#[test]
fn the_iam_policy_allows_exactly_the_calls_capstan_makes() {
    let called = called();
    let allowed = allowed();
    let missing: Vec<_> = called.difference(&allowed).collect();
    let unused: Vec<_> = allowed.difference(&called).collect();
    assert!(missing.is_empty(), "called but not allowed: {missing:?}");
    assert!(unused.is_empty(), "allowed but never called: {unused:?}");
    assert_eq!(called.len(), 25, "{called:?}");
}

#[test]
fn operations_are_found_after_the_client_only() {
    let text = "let out = self\n    .paced(Category::ServiceRead)\n    .await\n    .describe_services()\n    .send()\n    .await?;\nlet n = out.failures().len();\nself.client().await.set_desired_capacity().send().await";
    assert_eq!(
        operations(text),
        ["describe_services", "set_desired_capacity"]
    );
}

#[test]
fn snake_case_operations_become_iam_actions() {
    assert_eq!(
        pascal("terminate_instance_in_auto_scaling_group"),
        "TerminateInstanceInAutoScalingGroup"
    );
    assert_eq!(pascal("get_queue_url"), "GetQueueUrl");
}

/// The actions of every IAM policy in `text` (a README): its fenced ```json blocks that
/// hold a `Statement`.
fn readme_policies(text: &str) -> Vec<BTreeSet<String>> {
    let mut out = Vec::new();
    for block in text.split("```json").skip(1) {
        let body = block.split("```").next().unwrap();
        let Ok(policy) = serde_json::from_str::<serde_json::Value>(body) else {
            continue;
        };
        let Some(statements) = policy["Statement"].as_array() else {
            continue;
        };
        let mut actions = BTreeSet::new();
        for statement in statements {
            match &statement["Action"] {
                serde_json::Value::String(a) => actions.insert(a.clone()),
                other => other
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| actions.insert(a.as_str().unwrap().to_owned())),
            };
        }
        out.push(actions);
    }
    out
}

/// Every recipe gives the IAM policy capstan's role needs for it, in its README (a
/// ```json block) or as `examples/<recipe>/iam-policy*.json` (each of its actions named
/// in the README): only operations capstan calls, so none is misspelled or unused.
#[test]
fn every_recipe_gives_an_iam_policy_of_calls_capstan_makes() {
    let allowed = allowed();
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(readme) = std::fs::read_to_string(dir.join("README.md")) else {
            continue;
        };
        let recipe = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut policies = readme_policies(&readme);
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("iam-policy") && name.ends_with(".json") {
                let actions = policy_actions(&format!("examples/{recipe}/{name}"));
                let unlisted: Vec<_> = actions
                    .iter()
                    .filter(|a| {
                        let (_, op) = a.split_once(':').unwrap();
                        !readme.contains(a.as_str()) && !readme.contains(&format!("`{op}`"))
                    })
                    .collect();
                assert!(
                    unlisted.is_empty(),
                    "examples/{recipe}/README.md does not name {unlisted:?} of {name}"
                );
                policies.push(actions);
            }
        }
        assert!(!policies.is_empty(), "examples/{recipe}: no IAM policy");
        for policy in policies {
            let unknown: Vec<_> = policy.difference(&allowed).collect();
            assert!(
                unknown.is_empty(),
                "examples/{recipe}: a policy allows actions capstan never calls: {unknown:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5, "recipes with a README");
}
