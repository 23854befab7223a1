//! The hub's one configuration: command-line flags and environment variables (clap), an optional
//! TOML file, defaults — merged and validated once at start-up into [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
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
    /// TOML file with any of the settings below (snake_case keys); flags and env win over it.
    #[arg(long, env = "FLEETGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:8000].
    #[arg(long, env = "FLEETGATE_LISTEN")]
    pub listen: Option<String>,
    /// Directory for identities, generated tokens and listen.addr [default: ./data].
    #[arg(long, env = "FLEETGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin token (prefer the env variable or --admin-token-file over the flag).
    #[arg(long, env = "FLEETGATE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Enrollment token for /add_node.
    #[arg(long, env = "FLEETGATE_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// File holding the admin token.
    #[arg(long, env = "FLEETGATE_ADMIN_TOKEN_FILE")]
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
}

/// The `--config` TOML file: the same settings as the flags, snake_case; tokens only by file.
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
}

/// Where a token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given literally (environment variable or flag).
    Value(String),
    /// Read from a file at start-up.
    File(PathBuf),
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
    /// Name of the label set to the node name, Prometheus-style `instance`.
    pub instance_label: String,
    /// Name of the second label set to the node name.
    pub node_label: String,
    /// Fixed staleness; `None` means three of each node's own push intervals.
    pub stale_after: Option<Duration>,
    /// Push size limits.
    pub limits: Limits,
}

/// A configuration problem, naming the setting at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {field}: {problem}")]
pub struct ConfigError {
    /// The flag / key at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        problem: problem.into(),
    }
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
            instance_label: "instance".to_string(),
            node_label: "node".to_string(),
            stale_after: None,
            limits: Limits::default(),
        }
    }

    /// Merges flags/env over the `--config` file over defaults and validates the result.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut c = Config::with_data_dir(
            args.data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "./data".into()),
        );
        if let Some(listen) = args.listen.or(file.listen) {
            c.listen = listen;
        }
        c.admin_token = token_source(
            args.admin_token,
            args.admin_token_file.or(file.admin_token_file),
        );
        c.enroll_token = token_source(
            args.enroll_token,
            args.enroll_token_file.or(file.enroll_token_file),
        );
        c.tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad("tls_key", "--tls-cert is set but --tls-key is not"))
            }
            (None, Some(_)) => {
                return Err(bad("tls_cert", "--tls-key is set but --tls-cert is not"))
            }
        };
        if let Some(l) = args.instance_label.or(file.instance_label) {
            c.instance_label = l;
        }
        if let Some(l) = args.node_label.or(file.node_label) {
            c.node_label = l;
        }
        if let Some(s) = args.stale_after.or(file.stale_after) {
            let d = humantime::parse_duration(&s)
                .map_err(|e| bad("stale_after", format!("{s:?}: {e}")))?;
            c.stale_after = Some(d);
        }
        let l = &mut c.limits;
        l.max_body_bytes = args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(l.max_body_bytes);
        l.max_decompressed_bytes = args
            .max_decompressed_bytes
            .or(file.max_decompressed_bytes)
            .unwrap_or(l.max_decompressed_bytes);
        l.max_series_per_node = args
            .max_series_per_node
            .or(file.max_series_per_node)
            .unwrap_or(l.max_series_per_node);
        l.max_labels_per_series = args
            .max_labels_per_series
            .or(file.max_labels_per_series)
            .unwrap_or(l.max_labels_per_series);
        l.max_label_value_len = args
            .max_label_value_len
            .or(file.max_label_value_len)
            .unwrap_or(l.max_label_value_len);
        c.validate()?;
        Ok(c)
    }

    /// Checks every setting once; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "listen",
                format!("{:?} is not an address like 0.0.0.0:8000", self.listen),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        for (field, label) in [
            ("instance_label", &self.instance_label),
            ("node_label", &self.node_label),
        ] {
            if !fleetgate_shared::names::is_valid_label_name(label) || label.starts_with("__") {
                return Err(bad(field, format!("{label:?} is not a valid label name")));
            }
        }
        for (field, src) in [
            ("admin_token", &self.admin_token),
            ("enroll_token", &self.enroll_token),
        ] {
            if let TokenSource::Value(v) = src {
                if v.trim().len() < 16 {
                    return Err(bad(field, "must be at least 16 characters"));
                }
            }
        }
        if self.stale_after == Some(Duration::ZERO) {
            return Err(bad("stale_after", "must be greater than zero"));
        }
        let l = &self.limits;
        for (field, v) in [
            ("max_body_bytes", l.max_body_bytes),
            ("max_decompressed_bytes", l.max_decompressed_bytes),
            ("max_series_per_node", l.max_series_per_node),
            ("max_labels_per_series", l.max_labels_per_series),
            ("max_label_value_len", l.max_label_value_len),
        ] {
            if v == 0 {
                return Err(bad(field, "must be greater than zero"));
            }
        }
        Ok(())
    }

    /// How long a node whose push interval is `interval` stays on /metrics without pushing.
    pub fn stale_after_for(&self, interval: Duration) -> Duration {
        self.stale_after.unwrap_or(interval.saturating_mul(3))
    }
}

fn token_source(value: Option<String>, file: Option<PathBuf>) -> TokenSource {
    match (value, file) {
        (Some(v), _) if !v.is_empty() => TokenSource::Value(v),
        (_, Some(path)) => TokenSource::File(path),
        _ => TokenSource::Generated,
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("config", format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| bad("config", format!("{}: {e}", path.display())))
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
        assert_eq!(parse(&["--listen", "nope"]).unwrap_err().field, "listen");
        assert_eq!(
            parse(&["--tls-cert", "a.pem"]).unwrap_err().field,
            "tls_key"
        );
        assert_eq!(
            parse(&["--node-label", "a-b"]).unwrap_err().field,
            "node_label"
        );
        assert_eq!(
            parse(&["--stale-after", "soon"]).unwrap_err().field,
            "stale_after"
        );
        assert_eq!(
            parse(&["--max-body-bytes", "0"]).unwrap_err().field,
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
        assert_eq!(err.field, "config");
        assert!(err.problem.contains("listne"), "{err}");
    }
}
