//! An ECS service on moto for tests of the ECS target: its own cluster, a FARGATE task
//! definition, the service, tasks of its group running (moto's `UpdateService` starts
//! none, so they are started with `RunTask`), and an IP target group in the same VPC.
//!
//! Set up over moto's wire protocols directly (ECS JSON, EC2 and ELBv2 query), so
//! tests need no SDK client of their own for it. Task transitions are made manual
//! ([`Moto::manual_ecs_tasks`]) so tasks keep their status until stopped.

use serde_json::{Value, json};

use crate::moto::{Moto, xml_field};

/// The `X-Amz-Target` prefix of ECS operations.
const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113.";

/// The container port of the service's tasks (and the target group's port).
pub const PORT: u16 = 8080;

/// An ECS service on moto. See the module docs.
#[derive(Debug, Clone)]
pub struct EcsFixture {
    /// The cluster's name (unique to the test's handle).
    pub cluster: String,
    /// The service's name.
    pub service: String,
    /// The ARNs of the tasks started for it, oldest first.
    pub tasks: Vec<String>,
    /// The IP target group's ARN (no targets registered).
    pub target_group: String,
    subnet: String,
    security_group: String,
}

impl Moto {
    /// An ECS JSON-protocol call: the answer's JSON.
    ///
    /// # Panics
    /// If the call fails or the answer is not 200 with JSON.
    pub fn ecs(&self, operation: &str, body: &Value) -> Value {
        let headers = format!(
            "X-Amz-Target: {ECS_TARGET}{operation}\r\nContent-Type: application/x-amz-json-1.1\r\n{}",
            crate::moto::auth_header("ecs")
        );
        let answer = crate::moto::request(self.port(), "POST", "/", &headers, &body.to_string())
            .unwrap_or_else(|e| panic!("moto ecs {operation} failed: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "moto ecs {operation}: {answer}"
        );
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("moto ecs {operation}: {e}: {body}"))
    }

    /// A service named for this handle with `desired` as its desired count and
    /// `tasks` tasks of its group running.
    ///
    /// # Panics
    /// If moto refuses a step.
    pub fn ecs_service(&self, desired: u32, tasks: u32) -> EcsFixture {
        self.manual_ecs_tasks();
        // EC2: a VPC with DNS host names (moto needs them to give awsvpc tasks an
        // address), a subnet and a security group.
        let ec2 = |params: &[(&str, &str)]| {
            let mut all = vec![("Version", "2016-11-15")];
            all.extend_from_slice(params);
            self.query("ec2", &all)
        };
        let vpc = ec2(&[("Action", "CreateVpc"), ("CidrBlock", "10.0.0.0/16")]);
        let vpc = xml_field(&vpc, "vpcId").expect("a VPC id").to_owned();
        ec2(&[
            ("Action", "ModifyVpcAttribute"),
            ("VpcId", &vpc),
            ("EnableDnsHostnames.Value", "true"),
        ]);
        let subnet = ec2(&[
            ("Action", "CreateSubnet"),
            ("VpcId", &vpc),
            ("CidrBlock", "10.0.1.0/24"),
            ("AvailabilityZone", "us-east-1a"),
        ]);
        let subnet = xml_field(&subnet, "subnetId")
            .expect("a subnet id")
            .to_owned();
        let group = ec2(&[
            ("Action", "CreateSecurityGroup"),
            ("VpcId", &vpc),
            ("GroupName", &self.name("sg")),
            ("GroupDescription", "tasks"),
        ]);
        let security_group = xml_field(&group, "groupId").expect("a group id").to_owned();
        // ELBv2: an IP target group (names: letters, digits and hyphens, at most 32).
        let name = self.name("tg").replace('_', "-");
        let name = name[name.len().saturating_sub(32)..]
            .trim_start_matches('-')
            .to_owned();
        let port = PORT.to_string();
        let tg = self.query(
            "elasticloadbalancing",
            &[
                ("Action", "CreateTargetGroup"),
                ("Version", "2015-12-01"),
                ("Name", &name),
                ("Protocol", "HTTP"),
                ("Port", &port),
                ("VpcId", &vpc),
                ("TargetType", "ip"),
            ],
        );
        let target_group = xml_field(&tg, "TargetGroupArn")
            .expect("a target group ARN")
            .to_owned();
        // ECS.
        let cluster = self.name("cluster");
        let service = self.name("web");
        self.ecs("CreateCluster", &json!({ "clusterName": cluster }));
        self.ecs(
            "RegisterTaskDefinition",
            &json!({
                "family": service,
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "256",
                "memory": "512",
                "containerDefinitions": [{
                    "name": "app", "image": "app", "essential": true,
                    "cpu": 256, "memory": 512,
                    "portMappings": [{ "containerPort": PORT }]
                }]
            }),
        );
        let mut fixture = EcsFixture {
            cluster,
            service,
            tasks: Vec::new(),
            target_group,
            subnet,
            security_group,
        };
        self.ecs(
            "CreateService",
            &json!({
                "cluster": fixture.cluster,
                "serviceName": fixture.service,
                "taskDefinition": fixture.service,
                "desiredCount": desired,
                "launchType": "FARGATE",
                "networkConfiguration": fixture.network(),
            }),
        );
        // moto reports no running tasks after CreateService, and a running count equal
        // to the desired count after an UpdateService: make it the latter.
        self.ecs(
            "UpdateService",
            &json!({
                "cluster": fixture.cluster,
                "service": fixture.service,
                "desiredCount": desired,
            }),
        );
        fixture.run_tasks(self, tasks);
        fixture
    }
}

impl EcsFixture {
    fn network(&self) -> Value {
        json!({ "awsvpcConfiguration": {
            "subnets": [self.subnet], "securityGroups": [self.security_group]
        }})
    }

    /// Starts `count` more tasks in the service's group.
    ///
    /// # Panics
    /// If moto refuses.
    pub fn run_tasks(&mut self, moto: &Moto, count: u32) {
        if count == 0 {
            return;
        }
        let out = moto.ecs(
            "RunTask",
            &json!({
                "cluster": self.cluster,
                "taskDefinition": self.service,
                "count": count,
                "launchType": "FARGATE",
                "group": format!("service:{}", self.service),
                "startedBy": "capstan-test",
                "networkConfiguration": self.network(),
            }),
        );
        assert_eq!(out["failures"], json!([]), "{out}");
        let arns = out["tasks"].as_array().expect("tasks");
        self.tasks.extend(
            arns.iter()
                .filter_map(|t| t["taskArn"].as_str().map(str::to_owned)),
        );
    }

    /// The service's `runningCount` as moto has it.
    ///
    /// # Panics
    /// If moto does not describe the service.
    pub fn running_count(&self, moto: &Moto) -> u64 {
        let out = moto.ecs(
            "DescribeServices",
            &json!({ "cluster": self.cluster, "services": [self.service] }),
        );
        out["services"][0]["runningCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("no runningCount in {out}"))
    }

    /// The service's `desiredCount` as moto has it.
    ///
    /// # Panics
    /// If moto does not describe the service.
    pub fn desired_count(&self, moto: &Moto) -> u64 {
        let out = moto.ecs(
            "DescribeServices",
            &json!({ "cluster": self.cluster, "services": [self.service] }),
        );
        out["services"][0]["desiredCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("no desiredCount in {out}"))
    }

    /// Each task as moto describes it now (`lastStatus`, `desiredStatus`,
    /// `attachments`, ...), by ARN.
    ///
    /// # Panics
    /// If moto does not describe them.
    pub fn describe_tasks(&self, moto: &Moto) -> std::collections::BTreeMap<String, Value> {
        let out = moto.ecs(
            "DescribeTasks",
            &json!({ "cluster": self.cluster, "tasks": self.tasks }),
        );
        out["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("no tasks in {out}"))
            .iter()
            .filter_map(|t| Some((t["taskArn"].as_str()?.to_owned(), t.clone())))
            .collect()
    }

    /// The private IP of each task (its awsvpc interface), by ARN.
    ///
    /// # Panics
    /// If moto does not describe them or a task has no address.
    pub fn task_ips(&self, moto: &Moto) -> std::collections::BTreeMap<String, String> {
        self.describe_tasks(moto)
            .into_iter()
            .map(|(arn, t)| {
                let ip = t["attachments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|a| a["details"].as_array().into_iter().flatten())
                    .find(|d| d["name"] == "privateIPv4Address")
                    .and_then(|d| d["value"].as_str())
                    .unwrap_or_else(|| panic!("task {arn} has no private IP: {t}"))
                    .to_owned();
                (arn, ip)
            })
            .collect()
    }

    /// Registers every task's IP in the target group, on [`PORT`].
    ///
    /// # Panics
    /// If moto refuses.
    pub fn register_targets(&self, moto: &Moto) {
        let port = PORT.to_string();
        let ips: Vec<String> = self.task_ips(moto).into_values().collect();
        let mut params = vec![
            ("Action", "RegisterTargets"),
            ("Version", "2015-12-01"),
            ("TargetGroupArn", self.target_group.as_str()),
        ];
        let keys: Vec<(String, String)> = (1..=ips.len())
            .map(|i| {
                (
                    format!("Targets.member.{i}.Id"),
                    format!("Targets.member.{i}.Port"),
                )
            })
            .collect();
        for ((id, port_key), ip) in keys.iter().zip(&ips) {
            params.push((id, ip));
            params.push((port_key, &port));
        }
        moto.query("elasticloadbalancing", &params);
    }

    /// The ids of the targets registered in the target group (in any state but
    /// `unused`).
    ///
    /// # Panics
    /// If moto refuses.
    pub fn registered_targets(&self, moto: &Moto) -> std::collections::BTreeSet<String> {
        let xml = moto.query(
            "elasticloadbalancing",
            &[
                ("Action", "DescribeTargetHealth"),
                ("Version", "2015-12-01"),
                ("TargetGroupArn", &self.target_group),
            ],
        );
        xml.split("<member>")
            .skip(1)
            .filter(|m| xml_field(m, "State") != Some("unused"))
            .filter_map(|m| xml_field(m, "Id").map(str::to_owned))
            .collect()
    }
}
