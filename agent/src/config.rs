//! The agent's one configuration: command-line flags, each with its `FLEETGATE_*` environment
//! variable, over an optional TOML file with the same keys, over the defaults. Validated once at
//! start-up into [`Config`]; every error names the field it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde::Deserialize;

/// Command line of `fleetgate-agent`. Every value is kept as given (strings) so that
/// [`Config::from_args`] can report a bad one by its environment variable name.
#[derive(Debug, Parser)]
#[command(
    name = "fleetgate-agent",
    version,
    about = "Collects host, GPU, container and Triton metrics and pushes them to a fleetgate hub"
)]
pub struct Args {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Collect once, print the exposition text to stdout and exit (no hub needed).
    #[arg(long, global = true, env = "FLEETGATE_ONCE")]
    pub once: bool,
    /// TOML file with the same keys as the flags (flags and environment win over it).
    #[arg(long, global = true, env = "FLEETGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Hub base URL.
    #[arg(long, global = true, env = "FLEETGATE_HUB")]
    pub hub: Option<String>,
    /// Enrollment token for the first `/add_node`.
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_ENROLL_TOKEN",
        hide_env_values = true
    )]
    pub enroll_token: Option<String>,
    /// File holding the enrollment token.
    #[arg(long, global = true, env = "FLEETGATE_ENROLL_TOKEN_FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// Node name (default: the hostname).
    #[arg(long, global = true, env = "FLEETGATE_NODE")]
    pub node: Option<String>,
    /// Push interval, e.g. `15s`, `1m` (default 15s).
    #[arg(long, global = true, env = "FLEETGATE_INTERVAL")]
    pub interval: Option<String>,
    /// Timeout of one request to the hub (default 10s).
    #[arg(long, global = true, env = "FLEETGATE_PUSH_TIMEOUT")]
    pub push_timeout: Option<String>,
    /// Timeout of one scrape of Triton or another endpoint (default 5s).
    #[arg(long, global = true, env = "FLEETGATE_SCRAPE_TIMEOUT")]
    pub scrape_timeout: Option<String>,
    /// Where the push token is kept between restarts.
    #[arg(long, global = true, env = "FLEETGATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Static label `k=v` attached to every series of this node (repeatable).
    #[arg(
        long = "label",
        global = true,
        env = "FLEETGATE_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// Enabled collectors, comma separated: host,gpu,containers,triton.
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_COLLECTORS",
        value_delimiter = ','
    )]
    pub collectors: Option<Vec<String>>,
    /// Docker Engine socket for the containers collector.
    #[arg(long, global = true, env = "FLEETGATE_DOCKER_SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// Triton's metrics URL.
    #[arg(long, global = true, env = "FLEETGATE_TRITON_URL")]
    pub triton_url: Option<String>,
    /// Extra local /metrics URL to forward (repeatable).
    #[arg(
        long = "scrape-url",
        global = true,
        env = "FLEETGATE_SCRAPE_URLS",
        value_delimiter = ','
    )]
    pub scrape_urls: Vec<String>,
    /// Where the host's /proc is mounted.
    #[arg(long, global = true, env = "FLEETGATE_PROC_PATH")]
    pub proc_path: Option<PathBuf>,
    /// Where the host's /sys is mounted.
    #[arg(long, global = true, env = "FLEETGATE_SYS_PATH")]
    pub sys_path: Option<PathBuf>,
    /// Where the host's / is mounted.
    #[arg(long, global = true, env = "FLEETGATE_ROOTFS_PATH")]
    pub rootfs_path: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Enroll if needed and push every interval (the default).
    Run,
    /// Remove this node from the hub with its own push token and forget the token.
    Deregister,
}

/// What the process does after the configuration is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Enroll and push until stopped.
    Run,
    /// Collect once and print the exposition text.
    Once,
    /// Call `/remove_node` and delete the stored token.
    Deregister,
}

/// The TOML file: the same keys as the flags, every one optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hub: Option<String>,
    enroll_token: Option<String>,
    enroll_token_file: Option<PathBuf>,
    node: Option<String>,
    interval: Option<String>,
    push_timeout: Option<String>,
    scrape_timeout: Option<String>,
    state_dir: Option<PathBuf>,
    labels: Option<BTreeMap<String, String>>,
    collectors: Option<Vec<String>>,
    docker_socket: Option<PathBuf>,
    triton_url: Option<String>,
    scrape_urls: Option<Vec<String>>,
    proc_path: Option<PathBuf>,
    sys_path: Option<PathBuf>,
    rootfs_path: Option<PathBuf>,
}

/// A collector that can be switched on or off with `--collectors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CollectorKind {
    /// node_exporter-compatible host metrics.
    Host,
    /// dcgm-exporter-compatible GPU metrics.
    Gpu,
    /// cAdvisor-compatible container metrics.
    Containers,
    /// Triton's own metrics endpoint, forwarded.
    Triton,
}

impl CollectorKind {
    /// Every collector, in the order of the default list.
    pub const ALL: [CollectorKind; 4] = [
        CollectorKind::Host,
        CollectorKind::Gpu,
        CollectorKind::Containers,
        CollectorKind::Triton,
    ];

    /// The name used in `--collectors` and in the `collector` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectorKind::Host => "host",
            CollectorKind::Gpu => "gpu",
            CollectorKind::Containers => "containers",
            CollectorKind::Triton => "triton",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the host collector reads the host's pseudo file systems.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMounts {
    /// The host's /proc.
    pub proc: PathBuf,
    /// The host's /sys.
    pub sys: PathBuf,
    /// The host's /.
    pub rootfs: PathBuf,
}

/// The validated configuration of the agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub base URL without trailing slash (http or https).
    pub hub: String,
    /// Enrollment token from the flag, the environment or the token file, if any was given;
    /// needed only for the first enrollment.
    pub enroll_token: Option<Secret>,
    /// Node identity, the hub's `instance`/`node` label.
    pub node: String,
    /// Time between pushes.
    pub interval: Duration,
    /// Timeout of one request to the hub.
    pub push_timeout: Duration,
    /// Timeout of one scrape.
    pub scrape_timeout: Duration,
    /// Directory holding the push token between restarts.
    pub state_dir: PathBuf,
    /// Static labels sent at enrollment; the hub attaches them to every series.
    pub labels: BTreeMap<String, String>,
    /// Enabled collectors, without duplicates.
    pub collectors: Vec<CollectorKind>,
    /// Docker Engine socket.
    pub docker_socket: PathBuf,
    /// Triton's metrics URL.
    pub triton_url: String,
    /// Extra endpoints forwarded as they are.
    pub scrape_urls: Vec<String>,
    /// Host file system mounts for the host collector.
    pub host: HostMounts,
}

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field as the operator sets it, e.g. `FLEETGATE_INTERVAL`.
        field: String,
        /// What is wrong with the value.
        message: String,
    },
}

/// Default push interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

impl Config {
    /// Loads the TOML file named by `--config` (if any), merges it under the flags and the
    /// environment, applies defaults and validates everything.
    pub fn from_args(args: Args) -> Result<(Mode, Config), ConfigError> {
        let mode = match (args.command, args.once) {
            (Some(Command::Deregister), true) => {
                return Err(invalid("--once", "cannot be combined with deregister"))
            }
            (Some(Command::Deregister), false) => Mode::Deregister,
            (_, true) => Mode::Once,
            (_, false) => Mode::Run,
        };
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        // Names a field by its environment variable, or by the file key when the file set it.
        let from_file = |key: &str| match &args.config {
            Some(p) => format!("{} ({key})", p.display()),
            None => key.to_string(),
        };
        let pick =
            |flag: Option<String>, file: Option<String>, env: &str, key: &str| match (flag, file) {
                (Some(v), _) => Some((v, env.to_string())),
                (None, Some(v)) => Some((v, from_file(key))),
                (None, None) => None,
            };

        let (hub, hub_field) = pick(args.hub, file.hub, "FLEETGATE_HUB", "hub")
            .unwrap_or_else(|| ("http://127.0.0.1:8000".into(), "FLEETGATE_HUB".into()));
        let hub = validate_url(&hub, &hub_field)?;

        let enroll_token = match (
            args.enroll_token.or(file.enroll_token),
            args.enroll_token_file.or(file.enroll_token_file),
        ) {
            (Some(t), _) => Some(non_empty_token(t, "FLEETGATE_ENROLL_TOKEN")?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "FLEETGATE_ENROLL_TOKEN_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(non_empty_token(text, "FLEETGATE_ENROLL_TOKEN_FILE")?)
            }
            (None, None) => None,
        };

        let node = match pick(args.node, file.node, "FLEETGATE_NODE", "node") {
            Some((n, field)) => validate_node(n, &field)?,
            None => validate_node(local_hostname(), "FLEETGATE_NODE (from the hostname)")?,
        };

        let duration = |flag, file, env: &str, key: &str, default: Duration| match pick(
            flag, file, env, key,
        ) {
            Some((text, field)) => parse_duration(&text, &field),
            None => Ok(default),
        };
        let interval = duration(
            args.interval,
            file.interval,
            "FLEETGATE_INTERVAL",
            "interval",
            DEFAULT_INTERVAL,
        )?;
        let push_timeout = duration(
            args.push_timeout,
            file.push_timeout,
            "FLEETGATE_PUSH_TIMEOUT",
            "push_timeout",
            Duration::from_secs(10),
        )?;
        let scrape_timeout = duration(
            args.scrape_timeout,
            file.scrape_timeout,
            "FLEETGATE_SCRAPE_TIMEOUT",
            "scrape_timeout",
            Duration::from_secs(5),
        )?;

        let mut labels = BTreeMap::new();
        let (label_source, label_field) = if args.labels.is_empty() {
            (
                file.labels
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<Vec<_>>(),
                from_file("labels"),
            )
        } else {
            let mut pairs = Vec::new();
            for item in args
                .labels
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
            {
                let (k, v) = item.split_once('=').ok_or_else(|| {
                    invalid(
                        "FLEETGATE_LABELS",
                        format!("label {item:?} is not written as name=value"),
                    )
                })?;
                pairs.push((k.trim().to_string(), v.trim().to_string()));
            }
            (pairs, "FLEETGATE_LABELS".to_string())
        };
        for (name, value) in label_source {
            validate_label_name(&name, &label_field)?;
            labels.insert(name, value);
        }

        let (collector_names, collectors_field) = match (args.collectors, file.collectors) {
            (Some(list), _) => (list, "FLEETGATE_COLLECTORS".to_string()),
            (None, Some(list)) => (list, from_file("collectors")),
            (None, None) => (
                CollectorKind::ALL
                    .iter()
                    .map(|k| k.as_str().to_string())
                    .collect(),
                String::new(),
            ),
        };
        let mut collectors = Vec::new();
        for name in collector_names
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let kind = CollectorKind::from_name(name).ok_or_else(|| {
                invalid(
                    &collectors_field,
                    format!("unknown collector {name:?} (known: host, gpu, containers, triton)"),
                )
            })?;
            if !collectors.contains(&kind) {
                collectors.push(kind);
            }
        }

        let (triton_url, triton_field) = pick(
            args.triton_url,
            file.triton_url,
            "FLEETGATE_TRITON_URL",
            "triton_url",
        )
        .unwrap_or_else(|| {
            (
                "http://127.0.0.1:8002/metrics".into(),
                "FLEETGATE_TRITON_URL".into(),
            )
        });
        let triton_url = validate_url(&triton_url, &triton_field)?;

        let (scrape_list, scrape_field) = if args.scrape_urls.is_empty() {
            (
                file.scrape_urls.unwrap_or_default(),
                from_file("scrape_urls"),
            )
        } else {
            (args.scrape_urls, "FLEETGATE_SCRAPE_URLS".to_string())
        };
        let mut scrape_urls = Vec::new();
        for url in scrape_list
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            scrape_urls.push(validate_url(url, &scrape_field)?);
        }

        let config = Config {
            hub,
            enroll_token,
            node,
            interval,
            push_timeout,
            scrape_timeout,
            state_dir: args
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| "/var/lib/fleetgate-agent".into()),
            labels,
            collectors,
            docker_socket: args
                .docker_socket
                .or(file.docker_socket)
                .unwrap_or_else(|| "/var/run/docker.sock".into()),
            triton_url,
            scrape_urls,
            host: HostMounts {
                proc: args
                    .proc_path
                    .or(file.proc_path)
                    .unwrap_or_else(|| "/proc".into()),
                sys: args
                    .sys_path
                    .or(file.sys_path)
                    .unwrap_or_else(|| "/sys".into()),
                rootfs: args
                    .rootfs_path
                    .or(file.rootfs_path)
                    .unwrap_or_else(|| "/".into()),
            },
        };
        Ok((mode, config))
    }

    /// Whether `kind` is in the enabled collector list.
    pub fn enabled(&self, kind: CollectorKind) -> bool {
        self.collectors.contains(&kind)
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let field = format!("FLEETGATE_CONFIG ({})", path.display());
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(&field, format!("cannot read: {e}")))?;
    toml::from_str(&text)
        .map_err(|e| invalid(&field, e.message().to_string() + &location(&text, e.span())))
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => format!(
            " (line {})",
            text[..r.start.min(text.len())].lines().count().max(1)
        ),
        None => String::new(),
    }
}

fn parse_duration(text: &str, field: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        invalid(
            field,
            format!("invalid duration {text:?} ({e}; write e.g. 15s or 1m)"),
        )
    })?;
    if d < Duration::from_millis(10) {
        return Err(invalid(
            field,
            format!("duration {text:?} is too short (at least 10ms)"),
        ));
    }
    Ok(d)
}

fn validate_url(url: &str, field: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| invalid(field, format!("invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            field,
            format!("URL {url:?} must start with http:// or https://"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(field, format!("URL {url:?} has no host")));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

fn validate_node(node: String, field: &str) -> Result<String, ConfigError> {
    let node = node.trim().to_string();
    if node.is_empty() {
        return Err(invalid(field, "node name is empty"));
    }
    if node.len() > 253 || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            field,
            format!("node name {node:?} must be at most 253 characters without spaces"),
        ));
    }
    Ok(node)
}

fn validate_label_name(name: &str, field: &str) -> Result<(), ConfigError> {
    if !fleetgate_shared::names::is_valid_label_name(name) || name.starts_with("__") {
        return Err(invalid(field, format!("invalid label name {name:?} (must match [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)")));
    }
    if matches!(name, "instance" | "node" | "job") {
        return Err(invalid(
            field,
            format!("label {name:?} is set by the hub or Prometheus and cannot be configured"),
        ));
    }
    Ok(())
}

fn non_empty_token(text: String, field: &str) -> Result<Secret, ConfigError> {
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(field, "token is empty"));
    }
    Ok(Secret::new(token))
}

/// The machine's hostname (the default node name).
pub fn local_hostname() -> String {
    sysinfo::System::host_name().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(argv: &[&str]) -> Result<(Mode, Config), ConfigError> {
        let mut full = vec!["fleetgate-agent"];
        full.extend_from_slice(argv);
        Config::from_args(Args::try_parse_from(full).unwrap())
    }

    fn err(argv: &[&str]) -> String {
        load(argv).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let (mode, c) = load(&["--node", "n1"]).unwrap();
        assert_eq!(mode, Mode::Run);
        assert_eq!(c.hub, "http://127.0.0.1:8000");
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.collectors, CollectorKind::ALL.to_vec());
        assert_eq!(c.triton_url, "http://127.0.0.1:8002/metrics");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/fleetgate-agent"));
        assert_eq!(c.host.proc, PathBuf::from("/proc"));
        assert!(c.enroll_token.is_none());
    }

    #[test]
    fn flags_parse() {
        let (mode, c) = load(&[
            "--once",
            "--node",
            "n1",
            "--interval",
            "1m",
            "--label",
            "dc=fra",
            "--label",
            "rack=r1",
            "--collectors",
            "host,triton",
            "--scrape-url",
            "http://127.0.0.1:9100/metrics",
            "--enroll-token",
            "s3cret",
        ])
        .unwrap();
        assert_eq!(mode, Mode::Once);
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.labels.get("dc").map(String::as_str), Some("fra"));
        assert_eq!(c.labels.len(), 2);
        assert_eq!(
            c.collectors,
            vec![CollectorKind::Host, CollectorKind::Triton]
        );
        assert_eq!(c.scrape_urls, vec!["http://127.0.0.1:9100/metrics"]);
        assert!(!format!("{c:?}").contains("s3cret"));
        let (mode, _) = load(&["deregister", "--node", "n1"]).unwrap();
        assert_eq!(mode, Mode::Deregister);
        let (_, c) = load(&["--node", "n1", "--collectors", ""]).unwrap();
        assert!(c.collectors.is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(&["--node", "n", "--interval", "abc"])
            .starts_with("FLEETGATE_INTERVAL: invalid duration \"abc\""));
        assert!(err(&["--node", "n", "--hub", "ftp://x"]).starts_with("FLEETGATE_HUB: "));
        assert!(err(&["--node", "n", "--hub", "not a url"]).starts_with("FLEETGATE_HUB: "));
        assert!(err(&["--node", "n", "--label", "1x=y"])
            .starts_with("FLEETGATE_LABELS: invalid label name"));
        assert!(err(&["--node", "n", "--label", "novalue"]).starts_with("FLEETGATE_LABELS: "));
        assert!(err(&["--node", "n", "--label", "instance=x"]).starts_with("FLEETGATE_LABELS: "));
        assert!(err(&["--node", "n", "--collectors", "host,disk"])
            .contains("FLEETGATE_COLLECTORS: unknown collector \"disk\""));
        assert!(err(&["--node", "n", "--triton-url", "localhost:8002"])
            .starts_with("FLEETGATE_TRITON_URL: "));
        assert!(err(&["--node", "n", "--scrape-url", "x"]).starts_with("FLEETGATE_SCRAPE_URLS: "));
        assert!(err(&["--node", "a b"]).starts_with("FLEETGATE_NODE: "));
        assert!(
            err(&["--node", "n", "--enroll-token-file", "/nonexistent/t"])
                .starts_with("FLEETGATE_ENROLL_TOKEN_FILE: ")
        );
    }

    #[test]
    fn toml_file_fills_in_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "hub = \"https://hub.example:8000/\"\nnode = \"from-file\"\ninterval = \"30s\"\ncollectors = [\"host\"]\nscrape_urls = [\"http://127.0.0.1:1/metrics\"]\n[labels]\nteam = \"ml\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let (_, c) = load(&["--config", p, "--interval", "5s"]).unwrap();
        assert_eq!(c.hub, "https://hub.example:8000");
        assert_eq!(c.node, "from-file");
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.collectors, vec![CollectorKind::Host]);
        assert_eq!(c.labels.get("team").map(String::as_str), Some("ml"));
        assert_eq!(c.scrape_urls.len(), 1);

        std::fs::write(&path, "interval = \"soon\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(e.contains("(interval): invalid duration \"soon\""), "{e}");
        std::fs::write(&path, "intervall = \"5s\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(
            e.starts_with("FLEETGATE_CONFIG (") && e.contains("intervall"),
            "{e}"
        );
    }

    #[test]
    fn token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "abc\n").unwrap();
        let (_, c) = load(&["--node", "n", "--enroll-token-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.enroll_token.unwrap().expose(), "abc");
    }
}
