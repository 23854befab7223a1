//! The hub's one configuration: command-line flags and environment variables (clap), an optional
//! TOML file, defaults — merged by [`fleetgate_daemon::settings`] (the agent's rules too) and
//! validated once at start-up into [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fleetgate_daemon::settings::Layers;
use fleetgate_daemon::{ConfigError, Key, Secret};
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
/// Push interval assumed for pushes that do not declare one (text pushes).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

/// Command-line flags; every one can also come from its environment variable. Options left unset
/// fall back to the `--config` file, then to the built-in default.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "fleetgate-hub",
    version,
    about = "Accepts pushed snapshots from enrolled agents and serves one federated /metrics"
)]
pub struct Args {
    /// What to do instead of serving (`nodes`); without one, the hub serves.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of the settings below (snake_case keys); flags and env win over it.
    #[arg(long, global = true, env = "FLEETGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8000].
    #[arg(long, env = "FLEETGATE_LISTEN")]
    pub listen: Option<String>,
    /// Directory for identities, generated tokens and listen.addr [default: ./data].
    #[arg(long, global = true, env = "FLEETGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin token (prefer the env variable or --admin-token-file over the flag).
    #[arg(
        long,
        global = true,
        env = "FLEETGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Enrollment token for /add_node.
    #[arg(long, env = "FLEETGATE_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// File holding the admin token.
    #[arg(long, global = true, env = "FLEETGATE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// File holding the enrollment token.
    #[arg(long, env = "FLEETGATE_ENROLL_TOKEN_FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// PEM certificate chain; with --tls-key, the hub serves HTTPS.
    #[arg(long, env = "FLEETGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FLEETGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Label that carries the node name as Prometheus' instance [default: instance].
    #[arg(long, env = "FLEETGATE_INSTANCE_LABEL")]
    pub instance_label: Option<String>,
    /// Label that carries the node name [default: node].
    #[arg(long, env = "FLEETGATE_NODE_LABEL")]
    pub node_label: Option<String>,
    /// A node without a push for this long leaves /metrics, e.g. `45s` [default: 3 × the node's push interval].
    #[arg(long, env = "FLEETGATE_STALE_AFTER")]
    pub stale_after: Option<String>,
    /// Largest accepted request body in bytes, compressed [default: 8 MiB].
    #[arg(long, env = "FLEETGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest accepted body after decompression [default: 64 MiB].
    #[arg(long, env = "FLEETGATE_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: Option<usize>,
    /// Most series one node may push [default: 50000].
    #[arg(long, env = "FLEETGATE_MAX_SERIES_PER_NODE")]
    pub max_series_per_node: Option<usize>,
    /// Most labels on one series [default: 64].
    #[arg(long, env = "FLEETGATE_MAX_LABELS_PER_SERIES")]
    pub max_labels_per_series: Option<usize>,
    /// Longest label value in bytes [default: 2048].
    #[arg(long, env = "FLEETGATE_MAX_LABEL_VALUE_LEN")]
    pub max_label_value_len: Option<usize>,
    /// Open connections at most; more are closed at once [default: 16384].
    #[arg(long, env = "FLEETGATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// A connection that has not sent a complete request head for this long (idle keep-alive
    /// included) is closed, e.g. `30s` [default: 30s].
    #[arg(long, env = "FLEETGATE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// A request not answered within this time, body upload included, gets 408 [default: 60s].
    #[arg(long, env = "FLEETGATE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<String>,
    /// Pushes read and waiting for ingest at most; beyond, 429 with Retry-After [default: 256].
    #[arg(long, env = "FLEETGATE_MAX_PENDING_PUSHES")]
    pub max_pending_pushes: Option<usize>,
    /// Failed authentications one source address may make at once before it gets 429 [default: 20].
    #[arg(long, env = "FLEETGATE_AUTH_FAILURE_BURST")]
    pub auth_failure_burst: Option<u32>,
    /// Failed authentications per second a source address regains, e.g. `0.5` [default: 1].
    #[arg(long, env = "FLEETGATE_AUTH_FAILURE_RATE")]
    pub auth_failure_rate: Option<f64>,
    /// Token that scrapes of /metrics must present (bearer, or as the basic-auth password);
    /// prefer the env variable or --metrics-token-file [default: /metrics is open].
    #[arg(long, env = "FLEETGATE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// File holding the /metrics token.
    #[arg(long, env = "FLEETGATE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// PEM CA certificate(s): pushes, enrollments and a node's own removal need a client
    /// certificate signed by one of them (mutual TLS; needs --tls-cert and --tls-key).
    #[arg(long, env = "FLEETGATE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// What `fleetgate-hub` does instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Manage the nodes of a running hub (list, show, remove, add, readmit) with the admin
    /// token. Exit codes: 0 done, 1 the hub refused, 2 usage or settings, 3 hub unreachable.
    Nodes(crate::cli::NodesArgs),
}

/// The `--config` TOML file: the same settings as the flags, snake_case; secrets only as files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    enroll_token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    instance_label: Option<String>,
    node_label: Option<String>,
    stale_after: Option<String>,
    max_body_bytes: Option<usize>,
    max_decompressed_bytes: Option<usize>,
    max_series_per_node: Option<usize>,
    max_labels_per_series: Option<usize>,
    max_label_value_len: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    request_timeout: Option<String>,
    max_pending_pushes: Option<usize>,
    auth_failure_burst: Option<u32>,
    auth_failure_rate: Option<f64>,
    metrics_token_file: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
}

/// Keys a TOML file may not hold: they are secrets, which go in files of their own.
const SECRET_KEYS: [&str; 3] = ["admin_token", "enroll_token", "metrics_token"];

/// The hub's settings: TOML key, flag and environment variable of each.
mod keys {
    use fleetgate_daemon::Key;
    pub const LISTEN: Key = Key::new("listen", "--listen", "FLEETGATE_LISTEN");
    pub const DATA_DIR: Key = Key::new("data_dir", "--data-dir", "FLEETGATE_DATA_DIR");
    pub const ADMIN_TOKEN: Key = Key::new("admin_token", "--admin-token", "FLEETGATE_ADMIN_TOKEN");
    pub const ADMIN_TOKEN_FILE: Key = Key::new(
        "admin_token_file",
        "--admin-token-file",
        "FLEETGATE_ADMIN_TOKEN_FILE",
    );
    pub const ENROLL_TOKEN: Key =
        Key::new("enroll_token", "--enroll-token", "FLEETGATE_ENROLL_TOKEN");
    pub const ENROLL_TOKEN_FILE: Key = Key::new(
        "enroll_token_file",
        "--enroll-token-file",
        "FLEETGATE_ENROLL_TOKEN_FILE",
    );
    pub const TLS_CERT: Key = Key::new("tls_cert", "--tls-cert", "FLEETGATE_TLS_CERT");
    pub const TLS_KEY: Key = Key::new("tls_key", "--tls-key", "FLEETGATE_TLS_KEY");
    pub const INSTANCE_LABEL: Key = Key::new(
        "instance_label",
        "--instance-label",
        "FLEETGATE_INSTANCE_LABEL",
    );
    pub const NODE_LABEL: Key = Key::new("node_label", "--node-label", "FLEETGATE_NODE_LABEL");
    pub const STALE_AFTER: Key = Key::new("stale_after", "--stale-after", "FLEETGATE_STALE_AFTER");
    pub const MAX_BODY_BYTES: Key = Key::new(
        "max_body_bytes",
        "--max-body-bytes",
        "FLEETGATE_MAX_BODY_BYTES",
    );
    pub const MAX_DECOMPRESSED_BYTES: Key = Key::new(
        "max_decompressed_bytes",
        "--max-decompressed-bytes",
        "FLEETGATE_MAX_DECOMPRESSED_BYTES",
    );
    pub const MAX_SERIES_PER_NODE: Key = Key::new(
        "max_series_per_node",
        "--max-series-per-node",
        "FLEETGATE_MAX_SERIES_PER_NODE",
    );
    pub const MAX_LABELS_PER_SERIES: Key = Key::new(
        "max_labels_per_series",
        "--max-labels-per-series",
        "FLEETGATE_MAX_LABELS_PER_SERIES",
    );
    pub const MAX_LABEL_VALUE_LEN: Key = Key::new(
        "max_label_value_len",
        "--max-label-value-len",
        "FLEETGATE_MAX_LABEL_VALUE_LEN",
    );
    pub const MAX_CONNECTIONS: Key = Key::new(
        "max_connections",
        "--max-connections",
        "FLEETGATE_MAX_CONNECTIONS",
    );
    pub const HEADER_READ_TIMEOUT: Key = Key::new(
        "header_read_timeout",
        "--header-read-timeout",
        "FLEETGATE_HEADER_READ_TIMEOUT",
    );
    pub const REQUEST_TIMEOUT: Key = Key::new(
        "request_timeout",
        "--request-timeout",
        "FLEETGATE_REQUEST_TIMEOUT",
    );
    pub const MAX_PENDING_PUSHES: Key = Key::new(
        "max_pending_pushes",
        "--max-pending-pushes",
        "FLEETGATE_MAX_PENDING_PUSHES",
    );
    pub const AUTH_FAILURE_BURST: Key = Key::new(
        "auth_failure_burst",
        "--auth-failure-burst",
        "FLEETGATE_AUTH_FAILURE_BURST",
    );
    pub const AUTH_FAILURE_RATE: Key = Key::new(
        "auth_failure_rate",
        "--auth-failure-rate",
        "FLEETGATE_AUTH_FAILURE_RATE",
    );
    pub const METRICS_TOKEN: Key = Key::new(
        "metrics_token",
        "--metrics-token",
        "FLEETGATE_METRICS_TOKEN",
    );
    pub const METRICS_TOKEN_FILE: Key = Key::new(
        "metrics_token_file",
        "--metrics-token-file",
        "FLEETGATE_METRICS_TOKEN_FILE",
    );
    pub const TLS_CLIENT_CA: Key = Key::new(
        "tls_client_ca",
        "--tls-client-ca",
        "FLEETGATE_TLS_CLIENT_CA",
    );
}

/// Where a token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given by the operator (environment variable, flag or a token file), already read.
    Given(Secret),
    /// Generated on first start into `DATA_DIR/<name>.token`, then read back from there.
    Generated,
}

/// Size limits on what one push may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, compressed.
    pub max_body_bytes: usize,
    /// Largest body after decompression; a zstd or gzip bomb stops here.
    pub max_decompressed_bytes: usize,
    /// Most series in one node's snapshot.
    pub max_series_per_node: usize,
    /// Most labels on one series (the payload's own, before the hub adds the node labels).
    pub max_labels_per_series: usize,
    /// Longest label value in bytes.
    pub max_label_value_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_decompressed_bytes: 64 << 20,
            max_series_per_node: 50_000,
            max_labels_per_series: 64,
            max_label_value_len: 2048,
        }
    }
}

/// What the hub does about clients that hold connections open, trickle, flood or guess tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Protection {
    /// Open connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time a connection gets to send a complete request head, counted from the end of the
    /// previous response on a keep-alive connection: slowloris and idle connections end here.
    pub header_read_timeout: Duration,
    /// Time a request gets from its head to its answer, body upload included (408 beyond).
    pub request_timeout: Duration,
    /// Pushes read and waiting for (or in) ingest at most; one more is answered 429.
    pub max_pending_pushes: usize,
    /// Failed authentications a source address may make in a row before it gets 429.
    pub auth_failure_burst: u32,
    /// Failed authentications per second a source address regains.
    pub auth_failure_rate: f64,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_pending_pushes: 256,
            auth_failure_burst: 20,
            auth_failure_rate: 1.0,
        }
    }
}

/// The validated configuration the hub runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (used by `main`; `run` takes an already bound listener).
    pub listen: String,
    /// Holds `nodes.json`, generated tokens and `listen.addr`.
    pub data_dir: PathBuf,
    /// Admin token: /nodes, /remove_node of any node, re-adding removed nodes.
    pub admin_token: TokenSource,
    /// Enrollment token: /add_node.
    pub enroll_token: TokenSource,
    /// TLS certificate and key (PEM), both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// CA certificates (PEM) that sign the client certificates nodes must present (needs `tls`).
    pub tls_client_ca: Option<PathBuf>,
    /// Token scrapes of `/metrics` must present; `None` leaves `/metrics` open.
    pub metrics_token: Option<Secret>,
    /// Connection, timeout, overload and authentication-failure limits.
    pub protection: Protection,
    /// Name of the label set to the node name, Prometheus-style `instance`.
    pub instance_label: String,
    /// Name of the second label set to the node name.
    pub node_label: String,
    /// Fixed staleness; `None` means three of each node's own push intervals.
    pub stale_after: Option<Duration>,
    /// Push size limits.
    pub limits: Limits,
}

impl Config {
    /// Defaults with the given data directory: what tests and embedders start from.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_string(),
            data_dir: data_dir.into(),
            admin_token: TokenSource::Generated,
            enroll_token: TokenSource::Generated,
            tls: None,
            tls_client_ca: None,
            metrics_token: None,
            protection: Protection::default(),
            instance_label: "instance".to_string(),
            node_label: "node".to_string(),
            stale_after: None,
            limits: Limits::default(),
        }
    }

    /// Merges flags/env over the `--config` file over defaults and validates the result.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let (layers, file) = Layers::read::<FileConfig>(args.config.as_deref(), &SECRET_KEYS)?;
        let mut c = Config::with_data_dir(
            layers
                .pick_or(
                    keys::DATA_DIR,
                    args.data_dir,
                    file.data_dir,
                    "./data".into(),
                )
                .value,
        );
        if c.data_dir.as_os_str().is_empty() {
            return Err(layers
                .pick_or(keys::DATA_DIR, None, None, PathBuf::new())
                .invalid("must not be empty"));
        }
        let listen = layers.pick_or(
            keys::LISTEN,
            args.listen,
            file.listen,
            DEFAULT_LISTEN.to_string(),
        );
        if listen.value.parse::<SocketAddr>().is_err() {
            return Err(listen.invalid(format!(
                "{:?} is not an address like 0.0.0.0:8000",
                listen.value
            )));
        }
        c.listen = listen.value;
        let token = |value_key, value, file_key, flag, in_file| {
            Ok::<_, ConfigError>(
                match layers.secret(value_key, value, file_key, flag, in_file)? {
                    Some(secret) => TokenSource::Given(secret),
                    None => TokenSource::Generated,
                },
            )
        };
        c.admin_token = token(
            keys::ADMIN_TOKEN,
            args.admin_token,
            keys::ADMIN_TOKEN_FILE,
            args.admin_token_file,
            file.admin_token_file,
        )?;
        c.enroll_token = token(
            keys::ENROLL_TOKEN,
            args.enroll_token,
            keys::ENROLL_TOKEN_FILE,
            args.enroll_token_file,
            file.enroll_token_file,
        )?;
        c.tls = match (
            layers.pick(keys::TLS_CERT, args.tls_cert, file.tls_cert),
            layers.pick(keys::TLS_KEY, args.tls_key, file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert.value, key.value)),
            (None, None) => None,
            (Some(cert), None) => return Err(cert.invalid("is set but tls_key (--tls-key) is not")),
            (None, Some(key)) => return Err(key.invalid("is set but tls_cert (--tls-cert) is not")),
        };
        if let Some(ca) = layers.pick(keys::TLS_CLIENT_CA, args.tls_client_ca, file.tls_client_ca) {
            if c.tls.is_none() {
                return Err(ca.invalid(
                    "client certificates need TLS: set tls_cert and tls_key (--tls-cert, --tls-key) too",
                ));
            }
            c.tls_client_ca = Some(ca.value);
        }
        c.metrics_token = layers.secret(
            keys::METRICS_TOKEN,
            args.metrics_token,
            keys::METRICS_TOKEN_FILE,
            args.metrics_token_file,
            file.metrics_token_file,
        )?;
        let p = &mut c.protection;
        if let Some(n) = layers.pick(
            keys::MAX_CONNECTIONS,
            args.max_connections,
            file.max_connections,
        ) {
            if n.value == 0 {
                return Err(n.invalid("must be greater than zero"));
            }
            p.max_connections = n.value;
        }
        for (key, flag, in_file, slot) in [
            (
                keys::HEADER_READ_TIMEOUT,
                args.header_read_timeout,
                file.header_read_timeout,
                &mut p.header_read_timeout,
            ),
            (
                keys::REQUEST_TIMEOUT,
                args.request_timeout,
                file.request_timeout,
                &mut p.request_timeout,
            ),
        ] {
            if let Some(given) = layers.pick(key, flag, in_file) {
                let d = given.duration()?;
                if d < Duration::from_millis(100) {
                    return Err(
                        given.invalid(format!("{:?} is too short (at least 100ms)", given.value))
                    );
                }
                *slot = d;
            }
        }
        if let Some(n) = layers.pick(
            keys::MAX_PENDING_PUSHES,
            args.max_pending_pushes,
            file.max_pending_pushes,
        ) {
            if n.value == 0 {
                return Err(n.invalid("must be greater than zero"));
            }
            p.max_pending_pushes = n.value;
        }
        if let Some(n) = layers.pick(
            keys::AUTH_FAILURE_BURST,
            args.auth_failure_burst,
            file.auth_failure_burst,
        ) {
            if n.value == 0 {
                return Err(n.invalid("must be greater than zero"));
            }
            p.auth_failure_burst = n.value;
        }
        if let Some(r) = layers.pick(
            keys::AUTH_FAILURE_RATE,
            args.auth_failure_rate,
            file.auth_failure_rate,
        ) {
            if !(r.value.is_finite() && r.value > 0.0) {
                return Err(r.invalid(format!(
                    "{} is not a positive number of failures per second",
                    r.value
                )));
            }
            p.auth_failure_rate = r.value;
        }
        for (key, flag, in_file, slot) in [
            (
                keys::INSTANCE_LABEL,
                args.instance_label,
                file.instance_label,
                &mut c.instance_label,
            ),
            (
                keys::NODE_LABEL,
                args.node_label,
                file.node_label,
                &mut c.node_label,
            ),
        ] {
            if let Some(label) = layers.pick(key, flag, in_file) {
                if !fleetgate_shared::names::is_valid_label_name(&label.value)
                    || label.value.starts_with("__")
                {
                    return Err(
                        label.invalid(format!("{:?} is not a valid label name", label.value))
                    );
                }
                *slot = label.value;
            }
        }
        if let Some(stale) = layers.pick(keys::STALE_AFTER, args.stale_after, file.stale_after) {
            let d = stale
                .clone()
                .parse(|s| humantime::parse_duration(s.trim()))?;
            if d.is_zero() {
                return Err(stale.invalid("must be greater than zero"));
            }
            c.stale_after = Some(d);
        }
        let l = &mut c.limits;
        for (key, flag, in_file, slot) in [
            (
                keys::MAX_BODY_BYTES,
                args.max_body_bytes,
                file.max_body_bytes,
                &mut l.max_body_bytes,
            ),
            (
                keys::MAX_DECOMPRESSED_BYTES,
                args.max_decompressed_bytes,
                file.max_decompressed_bytes,
                &mut l.max_decompressed_bytes,
            ),
            (
                keys::MAX_SERIES_PER_NODE,
                args.max_series_per_node,
                file.max_series_per_node,
                &mut l.max_series_per_node,
            ),
            (
                keys::MAX_LABELS_PER_SERIES,
                args.max_labels_per_series,
                file.max_labels_per_series,
                &mut l.max_labels_per_series,
            ),
            (
                keys::MAX_LABEL_VALUE_LEN,
                args.max_label_value_len,
                file.max_label_value_len,
                &mut l.max_label_value_len,
            ),
        ] {
            if let Some(limit) = layers.pick(key, flag, in_file) {
                if limit.value == 0 {
                    return Err(limit.invalid("must be greater than zero"));
                }
                *slot = limit.value;
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks a configuration built in code (tests, embedders) the way [`Config::from_args`]
    /// checks what the operator gave; the error names the first setting at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: Key, problem: String| {
            Err(fleetgate_daemon::settings::error(
                key,
                &fleetgate_daemon::settings::Origin::Default,
                problem,
            ))
        };
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad(keys::LISTEN, format!("{:?} is not an address", self.listen));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad(keys::DATA_DIR, "must not be empty".into());
        }
        for (key, label) in [
            (keys::INSTANCE_LABEL, &self.instance_label),
            (keys::NODE_LABEL, &self.node_label),
        ] {
            if !fleetgate_shared::names::is_valid_label_name(label) || label.starts_with("__") {
                return bad(key, format!("{label:?} is not a valid label name"));
            }
        }
        if self.stale_after == Some(Duration::ZERO) {
            return bad(keys::STALE_AFTER, "must be greater than zero".into());
        }
        if self.tls_client_ca.is_some() && self.tls.is_none() {
            return bad(
                keys::TLS_CLIENT_CA,
                "client certificates need TLS: set tls_cert and tls_key too".into(),
            );
        }
        let p = &self.protection;
        for (key, v) in [
            (keys::MAX_CONNECTIONS, p.max_connections),
            (keys::MAX_PENDING_PUSHES, p.max_pending_pushes),
            (keys::AUTH_FAILURE_BURST, p.auth_failure_burst as usize),
        ] {
            if v == 0 {
                return bad(key, "must be greater than zero".into());
            }
        }
        for (key, d) in [
            (keys::HEADER_READ_TIMEOUT, p.header_read_timeout),
            (keys::REQUEST_TIMEOUT, p.request_timeout),
        ] {
            if d < Duration::from_millis(100) {
                return bad(key, "must be at least 100ms".into());
            }
        }
        if !(p.auth_failure_rate.is_finite() && p.auth_failure_rate > 0.0) {
            return bad(
                keys::AUTH_FAILURE_RATE,
                "must be a positive number of failures per second".into(),
            );
        }
        let l = &self.limits;
        for (key, v) in [
            (keys::MAX_BODY_BYTES, l.max_body_bytes),
            (keys::MAX_DECOMPRESSED_BYTES, l.max_decompressed_bytes),
            (keys::MAX_SERIES_PER_NODE, l.max_series_per_node),
            (keys::MAX_LABELS_PER_SERIES, l.max_labels_per_series),
            (keys::MAX_LABEL_VALUE_LEN, l.max_label_value_len),
        ] {
            if v == 0 {
                return bad(key, "must be greater than zero".into());
            }
        }
        Ok(())
    }

    /// How long a node whose push interval is `interval` stays on /metrics without pushing.
    pub fn stale_after_for(&self, interval: Duration) -> Duration {
        self.stale_after.unwrap_or(interval.saturating_mul(3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["fleetgate-hub"];
        argv.extend_from_slice(args);
        Config::from_args(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse(&["--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.limits, Limits::default());
        assert_eq!(
            c.stale_after_for(Duration::from_secs(15)),
            Duration::from_secs(45)
        );
        let c = parse(&["--stale-after", "10s", "--max-series-per-node", "7"]).unwrap();
        assert_eq!(
            c.stale_after_for(Duration::from_secs(15)),
            Duration::from_secs(10)
        );
        assert_eq!(c.limits.max_series_per_node, 7);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&["--listen", "nope"]).unwrap_err();
        assert_eq!(e.key, "listen");
        assert_eq!(
            e.to_string(),
            "--listen / FLEETGATE_LISTEN: \"nope\" is not an address like 0.0.0.0:8000"
        );
        let e = parse(&["--tls-cert", "a.pem"]).unwrap_err();
        assert_eq!(e.key, "tls_cert");
        assert!(e.problem.contains("--tls-key"), "{e}");
        let e = parse(&["--admin-token", "short"]).unwrap_err();
        assert_eq!(e.key, "admin_token");
        assert!(e.problem.contains("16"), "{e}");
        assert_eq!(
            parse(&["--node-label", "a-b"]).unwrap_err().key,
            "node_label"
        );
        assert_eq!(
            parse(&["--stale-after", "soon"]).unwrap_err().key,
            "stale_after"
        );
        assert_eq!(
            parse(&["--max-body-bytes", "0"]).unwrap_err().key,
            "max_body_bytes"
        );
    }

    #[test]
    fn toml_file_is_strict_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nmax_label_value_len = 10\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let c = parse(&["--config", p, "--max-label-value-len", "20"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.limits.max_label_value_len, 20);
        std::fs::write(&path, "listne = \"x\"\n").unwrap();
        let err = parse(&["--config", p]).unwrap_err();
        assert_eq!(err.key, "config");
        assert!(err.problem.contains("listne"), "{err}");
        // Secrets never sit in the file; their files may.
        std::fs::write(&path, "admin_token = \"0123456789abcdef0\"\n").unwrap();
        let err = parse(&["--config", p]).unwrap_err();
        assert_eq!(err.key, "admin_token");
        assert!(err.problem.contains("admin_token_file"), "{err}");
        let token = dir.path().join("admin.token");
        std::fs::write(&token, "0123456789abcdef0\n").unwrap();
        std::fs::write(
            &path,
            format!("admin_token_file = {:?}\nstale_after = \"soon\"\n", token),
        )
        .unwrap();
        let err = parse(&["--config", p]).unwrap_err();
        assert_eq!(err.setting, format!("{p}: stale_after"));
        std::fs::write(&path, format!("admin_token_file = {token:?}\n")).unwrap();
        let c = parse(&["--config", p]).unwrap();
        assert_eq!(
            c.admin_token,
            TokenSource::Given(Secret::new("0123456789abcdef0"))
        );
    }
}
