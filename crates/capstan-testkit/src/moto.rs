//! moto's AWS server for tests: one private `moto_server` per test process, started on
//! a free loopback port on first use, installed into the project's virtual environment
//! ([`crate::venv`]).
//!
//! moto accepts any credentials: tests use [`ACCESS_KEY_ID`] and
//! [`SECRET_ACCESS_KEY`] in the SDK configuration they build (never the process
//! environment), and [`REGION`]. Each [`Moto`] handle makes names unique to it
//! ([`Moto::name`]), so tests sharing the server do not see each other's queues;
//! [`Moto::reset`] wipes the whole server (every handle's state).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::Duration;

use crate::servers::{PrivateServer, START_TIMEOUT, free_port, unique_name, wait_until};

/// The pip requirement of the server (also in `scripts/test-requirements.txt`).
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";

/// The region tests use.
pub const REGION: &str = "us-east-1";

/// The dummy access key id tests use (moto accepts any).
pub const ACCESS_KEY_ID: &str = "testing";

/// The dummy secret access key tests use (moto accepts any).
pub const SECRET_ACCESS_KEY: &str = "testing";

/// A handle to this test process's moto server, with names unique to the handle.
#[derive(Debug)]
pub struct Moto {
    port: u16,
    prefix: String,
}

impl Moto {
    /// `http://127.0.0.1:PORT`, the endpoint URL for every service.
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A resource name (queue, cluster) unique to this handle, ending in `name`.
    /// Letters, digits, `-` and `_` only, as SQS queue names require.
    pub fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Wipes every resource on the server (`POST /moto-api/reset`), every handle's.
    ///
    /// # Panics
    /// If the server does not answer 200.
    pub fn reset(&self) {
        let answer = http(self.port, "POST", "/moto-api/reset")
            .unwrap_or_else(|e| panic!("moto reset failed: {e}"));
        assert!(answer.starts_with("HTTP/1.1 200"), "moto reset: {answer}");
    }
}

impl Moto {
    /// Makes ECS tasks keep their status until changed (moto otherwise advances each
    /// task one lifecycle step per `DescribeTasks`). Server-wide; survives resets.
    ///
    /// # Panics
    /// If the server does not accept it.
    pub fn manual_ecs_tasks(&self) {
        let body =
            r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#;
        let answer = request(
            self.port,
            "POST",
            "/moto-api/state-manager/set-transition",
            "",
            body,
        )
        .unwrap_or_else(|e| panic!("moto set-transition failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 20"),
            "moto set-transition: {answer}"
        );
    }

    /// A query-protocol call (EC2, ELBv2, Auto Scaling) with form `params` to
    /// `service` (as named in a credential scope: `ec2`, `elasticloadbalancing`,
    /// `autoscaling`): the answer's XML body. For test set-up that needs a service
    /// capstan has no SDK client for (e.g. an EC2 VPC for ECS tasks).
    ///
    /// # Panics
    /// If the call fails or the answer is not 200.
    pub fn query(&self, service: &str, params: &[(&str, &str)]) -> String {
        let body: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
            .collect();
        let auth = format!(
            "{}Content-Type: application/x-www-form-urlencoded\r\n",
            auth_header(service)
        );
        let answer = request(self.port, "POST", "/", &auth, &body.join("&"))
            .unwrap_or_else(|e| panic!("moto {service} call failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "moto {service}: {answer}"
        );
        answer
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_owned())
    }
}

impl Moto {
    /// A launch configuration and an Auto Scaling group of `min..=max` instances at
    /// `desired`, in `zone`, made with the query API (capstan never creates groups):
    /// the group's name (`name` made unique, see [`Moto::name`]).
    ///
    /// # Panics
    /// If moto refuses a call.
    pub fn autoscaling_group(
        &self,
        name: &str,
        zone: &str,
        min: u32,
        max: u32,
        desired: u32,
    ) -> String {
        let group = self.name(name);
        let launch = self.name(&format!("{name}-lc"));
        let autoscaling = |params: &[(&str, &str)]| {
            let mut all = vec![("Version", "2011-01-01")];
            all.extend_from_slice(params);
            self.query("autoscaling", &all)
        };
        autoscaling(&[
            ("Action", "CreateLaunchConfiguration"),
            ("LaunchConfigurationName", &launch),
            ("ImageId", "ami-12c6146b"),
            ("InstanceType", "t3.micro"),
        ]);
        let (min, max, desired) = (min.to_string(), max.to_string(), desired.to_string());
        autoscaling(&[
            ("Action", "CreateAutoScalingGroup"),
            ("AutoScalingGroupName", &group),
            ("LaunchConfigurationName", &launch),
            ("MinSize", &min),
            ("MaxSize", &max),
            ("DesiredCapacity", &desired),
            ("AvailabilityZones.member.1", zone),
        ]);
        group
    }

    /// Registers EC2 instance `instance_id` with `cluster` as a container instance, as
    /// the ECS agent does when the instance boots (moto starts no agent).
    ///
    /// # Panics
    /// If moto refuses the call.
    pub fn register_container_instance(&self, cluster: &str, instance_id: &str) {
        let document = serde_json::json!({ "instanceId": instance_id, "region": REGION });
        self.ecs(
            "RegisterContainerInstance",
            &serde_json::json!({
                "cluster": cluster,
                "instanceIdentityDocument": document.to_string(),
            }),
        );
    }
}

/// An `Authorization` header line naming `service` in its credential scope (moto routes
/// by it; it checks no signature).
pub(crate) fn auth_header(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n"
    )
}

/// The text of the first `<tag>` element of an XML answer.
pub fn xml_field<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `moto_server` program, installed first if missing.
///
/// # Panics
/// If pip cannot install it.
pub fn moto_server() -> std::path::PathBuf {
    crate::venv::tool(MOTO_REQUIREMENT, "moto_server")
}

/// A handle to this test process's moto server, started on first use.
///
/// # Panics
/// If the server cannot be installed or does not start.
pub fn moto() -> Moto {
    static SERVER: OnceLock<PrivateServer> = OnceLock::new();
    let port = SERVER.get_or_init(start).port();
    let prefix = unique_name("capstan-", "-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Moto { port, prefix }
}

/// A moto server of the caller's own, stopped when dropped (e.g. to test a server that
/// goes away).
///
/// # Panics
/// If the server cannot be installed or does not start.
pub fn private_moto() -> PrivateServer {
    start()
}

fn start() -> PrivateServer {
    let program = moto_server().to_string_lossy().into_owned();
    let mut last = String::new();
    // A free port can be taken between finding and binding it: try a few.
    for _ in 0..3 {
        let port = free_port();
        let args: Vec<String> = ["-H", "127.0.0.1", "-p", &port.to_string()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let dir = std::env::temp_dir().join(unique_name("capstan-moto-", "").replace(':', "-"));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let server = PrivateServer::spawn(&program, &args, port, dir);
        // moto is a Python program: its first start imports a lot.
        let ready = wait_until(START_TIMEOUT * 3, || {
            http(port, "GET", "/moto-api/data.json").is_ok_and(|a| a.starts_with("HTTP/1.1 200"))
        });
        if ready {
            return server;
        }
        last = format!(
            "moto_server on port {port} did not answer within {:?}",
            START_TIMEOUT * 3
        );
    }
    panic!("{last}");
}

/// One HTTP/1.1 request without a body to the server at `port`: the whole answer.
fn http(port: u16, method: &str, path: &str) -> Result<String, String> {
    request(port, method, path, "", "")
}

/// One HTTP/1.1 request with extra header lines (each ending in CRLF) and a body to
/// the server at `port`: the whole answer.
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_handle_and_valid_queue_names() {
        let a = moto();
        let b = moto();
        assert_eq!(a.port(), b.port());
        assert_ne!(a.name("q"), b.name("q"));
        let name = a.name("jobs");
        assert!(name.len() <= 80, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}"
        );
        a.reset();
    }
}
