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
    let text = std::fs::read_to_string(root().join("deploy/iam-policy.json")).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        for action in statement["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(!action.contains('*'), "no wildcard actions: {action}");
            assert!(actions.insert(action.to_owned()), "{action} twice");
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
