//! `fleetgate-hub nodes list|show|remove|add|readmit`: the nodes of a running hub from the
//! command line, through its HTTP API with the admin token. By default it reads the hub's own
//! settings (the same flags, environment and `--config` file), so on the hub's machine
//! `fleetgate-hub nodes list` finds the hub through `DATA_DIR/listen.addr` and the token in
//! `DATA_DIR/admin.token`.
//!
//! Exit codes scripts can rely on: [`EXIT_OK`], [`EXIT_REFUSED`], [`EXIT_USAGE`],
//! [`EXIT_UNREACHABLE`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{Args, Config, TokenSource};
use crate::fleet::{FleetView, NodeDetail, NodeState, NodeView};

/// Done.
pub const EXIT_OK: u8 = 0;
/// The hub answered with a refusal: unknown node, token refused, node already enrolled, ...
pub const EXIT_REFUSED: u8 = 1;
/// Bad command line or settings, or no token or hub address to be found (clap's usage errors
/// exit 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// The hub could not be reached (not running, wrong address, TLS failure, timeout).
pub const EXIT_UNREACHABLE: u8 = 3;

/// `fleetgate-hub nodes ...`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodesArgs {
    /// Hub base URL [default: from DATA_DIR/listen.addr; https when the hub's settings name a
    /// TLS certificate].
    #[arg(long, global = true, env = "FLEETGATE_HUB_URL")]
    pub url: Option<String>,
    /// PEM file of a CA to trust for an https hub, besides the built-in public (Mozilla) roots.
    #[arg(long, global = true, env = "FLEETGATE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the hub.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub action: NodesAction,
}

/// The node actions.
#[derive(Debug, Clone, Subcommand)]
pub enum NodesAction {
    /// Every node with its state, type, last push, series and latest rejection.
    List {
        /// Only nodes in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
    },
    /// One node: labels, enrollment details, push figures and its families.
    Show {
        /// Node name.
        node: String,
    },
    /// Remove a node: its push token is revoked and its series leave /metrics at once.
    Remove {
        /// Node name.
        node: String,
    },
    /// Enroll a node with the admin token and print its new push token (for a script that
    /// pushes text, or to provision a machine ahead of time).
    Add {
        /// Node name.
        node: String,
        /// Label `k=v` on every series of the node (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Hostname to record (shown to the admin only).
        #[arg(long)]
        hostname: Option<String>,
        /// IP address to record (shown to the admin only).
        #[arg(long)]
        ip: Option<String>,
        /// Enroll even when the node is enrolled already: its current token stops working.
        #[arg(long)]
        replace: bool,
    },
    /// Let a removed node enroll again with the enrollment token; its agent does when restarted.
    Readmit {
        /// Node name.
        node: String,
    },
}

/// `--state` of `nodes list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateFilter {
    /// Serving a fresh snapshot.
    Up,
    /// Enrolled, silent.
    Stale,
    /// Removed.
    Removed,
}

impl StateFilter {
    fn matches(self, state: NodeState) -> bool {
        matches!(
            (self, state),
            (StateFilter::Up, NodeState::Up)
                | (StateFilter::Stale, NodeState::Stale)
                | (StateFilter::Removed, NodeState::Removed)
        )
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not written as name=value"))?;
    let k = k.trim();
    if !fleetgate_shared::names::is_valid_label_name(k) || k.starts_with("__") {
        return Err(format!("invalid label name {k:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Why a command failed, and so its exit code.
#[derive(Debug)]
enum Failure {
    /// [`EXIT_REFUSED`].
    Refused(String),
    /// [`EXIT_USAGE`].
    Usage(String),
    /// [`EXIT_UNREACHABLE`].
    Unreachable(String),
}

/// Runs `fleetgate-hub nodes ...`: prints the result on stdout, a failure on stderr, and
/// returns the exit code.
pub async fn run(args: Args, nodes: NodesArgs) -> ExitCode {
    let (code, message) = match execute(args, &nodes).await {
        Ok(out) => {
            print!("{out}");
            return ExitCode::from(EXIT_OK);
        }
        Err(Failure::Refused(m)) => (EXIT_REFUSED, m),
        Err(Failure::Usage(m)) => (EXIT_USAGE, m),
        Err(Failure::Unreachable(m)) => (EXIT_UNREACHABLE, m),
    };
    eprintln!("fleetgate-hub nodes: {message}");
    ExitCode::from(code)
}

async fn execute(args: Args, nodes: &NodesArgs) -> Result<String, Failure> {
    let config = Config::from_args(args).map_err(|e| Failure::Usage(e.to_string()))?;
    let hub = Hub::connect(&config, nodes)?;
    match &nodes.action {
        NodesAction::List { state } => {
            let mut fleet: FleetView = hub.get("/api/nodes").await?;
            if let Some(filter) = state {
                fleet.nodes.retain(|n| filter.matches(n.state));
            }
            if nodes.json {
                return json(&fleet);
            }
            Ok(fleet_table(&fleet))
        }
        NodesAction::Show { node } => {
            let detail: NodeDetail = hub
                .get(&format!("/api/nodes/{}", path_segment(node)))
                .await?;
            if nodes.json {
                return json(&detail);
            }
            Ok(detail_text(&detail))
        }
        NodesAction::Remove { node } => {
            let answer: serde_json::Value = hub
                .post("/remove_node", &serde_json::json!({ "node": node }))
                .await?;
            if nodes.json {
                return json(&answer);
            }
            Ok(format!(
                "node {node} removed: its token is revoked and its series are gone from /metrics\n"
            ))
        }
        NodesAction::Readmit { node } => {
            let answer: serde_json::Value = hub
                .post("/readmit_node", &serde_json::json!({ "node": node }))
                .await?;
            if nodes.json {
                return json(&answer);
            }
            Ok(format!(
                "node {node} re-admitted: restart its agent and it enrolls again with the \
                 enrollment token (its old push token stays revoked)\n"
            ))
        }
        NodesAction::Add {
            node,
            labels,
            hostname,
            ip,
            replace,
        } => {
            if !replace {
                if let Some(existing) = hub.find(node).await? {
                    if existing.view.state != NodeState::Removed {
                        return Err(Failure::Refused(format!(
                            "node {node} is enrolled already ({}); --replace enrolls it again \
                             and revokes the token its agent holds",
                            existing.view.state.as_str()
                        )));
                    }
                }
            }
            let labels: BTreeMap<&str, &str> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let answer: serde_json::Value = hub
                .post(
                    "/add_node",
                    &serde_json::json!({
                        "node": node, "labels": labels, "hostname": hostname, "ip": ip,
                    }),
                )
                .await?;
            if nodes.json {
                return json(&answer);
            }
            let token = answer["token"].as_str().unwrap_or_default();
            Ok(format!("node {node} enrolled; its push token:\n{token}\n"))
        }
    }
}

fn json(value: &impl Serialize) -> Result<String, Failure> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Failure::Refused(format!("cannot print the answer: {e}")))
}

/// A node name as one URL path segment.
fn path_segment(node: &str) -> String {
    node.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A running hub, addressed with the admin token.
struct Hub {
    /// Base URL without trailing slash.
    url: String,
    /// The admin token.
    token: String,
    /// HTTP client with the timeout and trusted CA.
    http: reqwest::Client,
}

impl Hub {
    fn connect(config: &Config, nodes: &NodesArgs) -> Result<Hub, Failure> {
        let url = match &nodes.url {
            Some(url) => url.trim().trim_end_matches('/').to_string(),
            None => default_url(config)?,
        };
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| Failure::Usage(format!("--url / FLEETGATE_HUB_URL: {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Failure::Usage(format!(
                "--url / FLEETGATE_HUB_URL: {url:?} must start with http:// or https://"
            )));
        }
        let token = match &config.admin_token {
            TokenSource::Given(secret) => secret.expose().to_string(),
            TokenSource::Generated => {
                let path = config.data_dir.join("admin.token");
                crate::tokens::read_token(&path).map_err(|e| {
                    Failure::Usage(format!(
                        "no admin token: cannot read {} ({e}); give --admin-token-file or \
                         FLEETGATE_ADMIN_TOKEN, or --data-dir of the hub",
                        path.display()
                    ))
                })?
            }
        };
        let mut builder = reqwest::Client::builder()
            .timeout(nodes.timeout)
            .connect_timeout(nodes.timeout)
            .user_agent(concat!(
                "fleetgate-hub/",
                env!("CARGO_PKG_VERSION"),
                " nodes"
            ));
        // A proxy configured for the outside world is no way to a hub on this machine.
        let host = parsed.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            builder = builder.no_proxy();
        }
        if let Some(ca) = &nodes.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| {
                Failure::Usage(format!(
                    "--tls-ca / FLEETGATE_TLS_CA: cannot read {}: {e}",
                    ca.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Failure::Usage(format!(
                    "--tls-ca / FLEETGATE_TLS_CA: {}: {e}",
                    ca.display()
                ))
            })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::Usage(format!("HTTP client: {e}")))?;
        Ok(Hub { url, token, http })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        let req = self.http.get(format!("{}{path}", self.url));
        self.send(req).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Failure> {
        let req = self.http.post(format!("{}{path}", self.url)).json(body);
        self.send(req).await
    }

    /// The node, or `None` when the hub does not know it.
    async fn find(&self, node: &str) -> Result<Option<NodeDetail>, Failure> {
        let resp = self
            .http
            .get(format!("{}/api/nodes/{}", self.url, path_segment(node)))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.read(resp).await.map(Some)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Failure> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.read(resp).await
    }

    async fn read<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T, Failure> {
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        if !status.is_success() {
            let message = String::from_utf8_lossy(&body).trim().to_string();
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (is this the admin token of the hub at this URL?)"
            } else {
                ""
            };
            return Err(Failure::Refused(format!(
                "the hub at {} answered {}: {message}{hint}",
                self.url,
                status.as_u16()
            )));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Failure::Refused(format!(
                "unexpected answer from {} (is it a fleetgate hub?): {e}",
                self.url
            ))
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> Failure {
        // reqwest's own message is terse; its sources say why (refused, TLS, timeout).
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Failure::Unreachable(format!("cannot reach the hub at {}: {message}", self.url))
    }
}

/// `http://` (or `https://` with TLS settings) and the address in `DATA_DIR/listen.addr`, with
/// a wildcard address replaced by loopback.
fn default_url(config: &Config) -> Result<String, Failure> {
    let path = config.data_dir.join("listen.addr");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::Usage(format!(
            "no --url given and cannot read {} ({e}): give --url, or --data-dir (or --config) \
             of the hub",
            path.display()
        ))
    })?;
    let mut addr: SocketAddr = text.trim().parse().map_err(|e| {
        Failure::Usage(format!(
            "{} holds {:?}, not an address: {e}",
            path.display(),
            text.trim()
        ))
    })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{addr}"))
}

/// `3s`, `4m`, `2h`, `5d`.
fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != "node_type")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn rejection_text(view: &NodeView, now: f64) -> String {
    match &view.last_rejection {
        None => "-".into(),
        Some(r) => {
            let mut message: String = r.message.chars().take(60).collect();
            if r.message.chars().count() > 60 {
                message.push('…');
            }
            // A quarantine is a 200 (the rest was served); its message says what happened.
            match r.status {
                200 => format!("{} ago: {message}", age(now - r.at)),
                status => format!("{status} {} ago: {message}", age(now - r.at)),
            }
        }
    }
}

/// Rows of cells as aligned columns, the last one unpadded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < columns {
                let pad = widths[c] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn fleet_table(fleet: &FleetView) -> String {
    let mut rows = vec![[
        "NODE",
        "STATE",
        "TYPE",
        "LAST PUSH",
        "SERIES",
        "VALUES",
        "QUAR",
        "REJECTION",
        "LABELS",
    ]
    .map(String::from)
    .to_vec()];
    for n in &fleet.nodes {
        rows.push(vec![
            n.node.clone(),
            n.state.as_str().to_string(),
            n.labels
                .get("node_type")
                .cloned()
                .unwrap_or_else(|| "-".into()),
            n.last_push
                .map_or_else(|| "never".into(), |t| format!("{} ago", age(fleet.now - t))),
            n.series.to_string(),
            n.values_ratio()
                .map_or_else(|| "-".into(), |r| format!("{:.0}%", r * 100.0)),
            n.quarantined_families.to_string(),
            rejection_text(n, fleet.now),
            labels_text(&n.labels),
        ]);
    }
    let s = &fleet.summary;
    format!(
        "{}\n{} up, {} stale, {} removed; {} series; {:.1} pushes/s\n",
        table(&rows),
        s.up,
        s.stale,
        s.removed,
        s.series,
        s.pushes_per_second
    )
}

fn detail_text(d: &NodeDetail) -> String {
    let v = &d.view;
    let mut rows: Vec<Vec<String>> = vec![
        vec!["node".into(), v.node.clone()],
        vec!["state".into(), v.state.as_str().into()],
        vec![
            "labels".into(),
            v.labels
                .iter()
                .map(|(k, val)| format!("{k}={val}"))
                .collect::<Vec<_>>()
                .join(","),
        ],
        vec![
            "last push".into(),
            v.last_push
                .map_or_else(|| "never".into(), |t| format!("{} ago", age(d.now - t))),
        ],
        vec!["series".into(), v.series.to_string()],
    ];
    let mut optional = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            rows.push(vec![name.into(), value]);
        }
    };
    optional("hostname", v.hostname.clone());
    optional("ip", v.ip.clone());
    optional(
        "pushes",
        v.full_pushes
            .zip(v.values_pushes)
            .map(|(f, val)| format!("{f} full, {val} values only")),
    );
    optional(
        "rejection",
        v.last_rejection.as_ref().map(|_| rejection_text(v, d.now)),
    );
    optional(
        "quarantined",
        v.quarantined
            .as_ref()
            .filter(|q| !q.is_empty())
            .map(|q| q.join(",")),
    );
    let mut out = table(&rows);
    if d.families.is_empty() {
        out.push_str("\nno snapshot served now\n");
        return out;
    }
    let mut families = vec![vec!["FAMILY".into(), "TYPE".into(), "SERIES".into()]];
    families.extend(
        d.families
            .iter()
            .map(|f| vec![f.name.clone(), f.kind.clone(), f.series.to_string()]),
    );
    out.push('\n');
    out.push_str(&table(&families));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_tables_and_labels_read_well() {
        assert_eq!(age(3.4), "3s");
        assert_eq!(age(-1.0), "0s");
        assert_eq!(age(600.0), "10m");
        assert_eq!(age(3.0 * 3600.0), "3h");
        assert_eq!(age(3.0 * 86_400.0), "3d");
        let t = table(&[
            vec!["A".into(), "LONG".into(), "Z".into()],
            vec!["aaaa".into(), "b".into(), "".into()],
        ]);
        assert_eq!(t, "A     LONG  Z\naaaa  b\n");
        assert_eq!(parse_label("rack=r1"), Ok(("rack".into(), "r1".into())));
        assert!(parse_label("rack").unwrap_err().contains("name=value"));
        assert!(parse_label("1x=y").unwrap_err().contains("1x"));
        assert_eq!(path_segment("gpu-01.a_b~"), "gpu-01.a_b~");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_default_url_comes_from_listen_addr() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path());
        let err = default_url(&config).unwrap_err();
        assert!(
            matches!(&err, Failure::Usage(m) if m.contains("listen.addr")),
            "{err:?}"
        );
        std::fs::write(dir.path().join("listen.addr"), "0.0.0.0:8123").unwrap();
        assert_eq!(default_url(&config).unwrap(), "http://127.0.0.1:8123");
        std::fs::write(dir.path().join("listen.addr"), "[::]:8123").unwrap();
        assert_eq!(default_url(&config).unwrap(), "http://[::1]:8123");
        config.tls = Some(("c.pem".into(), "k.pem".into()));
        std::fs::write(dir.path().join("listen.addr"), "10.1.2.3:443").unwrap();
        assert_eq!(default_url(&config).unwrap(), "https://10.1.2.3:443");
        std::fs::write(dir.path().join("listen.addr"), "garbage").unwrap();
        assert!(matches!(default_url(&config), Err(Failure::Usage(_))));
    }
}
