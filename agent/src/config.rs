//! The agent's one configuration: command-line flags, each with its `FLEETGATE_*` environment
//! variable, over an optional TOML file with the same keys, over the defaults — merged by
//! [`fleetgate_daemon::settings`] under the same rules as the hub's. Validated once at start-up
//! into [`Config`]; every error names the setting it is about.
//!
//! The agent pushes to one hub or several: `--hub` / `FLEETGATE_HUB` (or the file's `hub` key)
//! takes a comma-separated list of base URLs sharing the one enrollment token, and the file's
//! `[[hubs]]` tables (`url`, optional `enroll_token_file`) give each hub a token of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use fleetgate_daemon::settings::{Given, Layers, Origin};
use serde::Deserialize;

use crate::hub_client::ProxyUrl;

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
    /// Hub base URL, or several separated by commas (every snapshot goes to each).
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
    /// How long an idle connection to a hub is kept for the next push (default 20s); keep it
    /// below the hub's `--header-read-timeout` (30s by default), after which the hub closes it.
    #[arg(long, global = true, env = "FLEETGATE_KEEP_ALIVE")]
    pub keep_alive: Option<String>,
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
    /// Client certificate (PEM) presented to a hub that requires one (mutual TLS); with --tls-key.
    #[arg(long, global = true, env = "FLEETGATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "FLEETGATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) the hub's certificate must chain to, instead of the built-in web roots.
    #[arg(long, global = true, env = "FLEETGATE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Directory whose `*.prom` files are merged into every snapshot, like node_exporter's
    /// textfile collector (off when unset).
    #[arg(long, global = true, env = "FLEETGATE_TEXTFILE_DIR")]
    pub textfile_dir: Option<PathBuf>,
    /// Proxy for requests to the hub, `http://[user:password@]host:port`; without it the
    /// agent uses HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY applies to both.
    #[arg(long, global = true, env = "FLEETGATE_PROXY", hide_env_values = true)]
    pub proxy: Option<String>,
}

/// Subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Enroll if needed and push every interval (the default).
    Run,
    /// Remove this node from every hub it holds a push token for, with that token, and forget
    /// the tokens of the hubs that removed it.
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

/// The TOML file: the same keys as the flags, every one optional; the enrollment token only as
/// `enroll_token_file` (secrets never sit in configuration files). Hubs either as `hub` (a URL or
/// a comma-separated list) or as `[[hubs]]` tables, not both.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hub: Option<String>,
    hubs: Option<Vec<HubTable>>,
    enroll_token_file: Option<PathBuf>,
    node: Option<String>,
    interval: Option<String>,
    push_timeout: Option<String>,
    scrape_timeout: Option<String>,
    keep_alive: Option<String>,
    state_dir: Option<PathBuf>,
    labels: Option<BTreeMap<String, String>>,
    collectors: Option<Vec<String>>,
    docker_socket: Option<PathBuf>,
    triton_url: Option<String>,
    scrape_urls: Option<Vec<String>>,
    proc_path: Option<PathBuf>,
    sys_path: Option<PathBuf>,
    rootfs_path: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    textfile_dir: Option<PathBuf>,
    proxy: Option<String>,
}

/// One `[[hubs]]` table of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubTable {
    /// The hub's base URL.
    url: Option<String>,
    /// File holding the enrollment token for this hub (default: the agent's enrollment token).
    enroll_token_file: Option<PathBuf>,
    /// Never accepted: read only to refuse it under the rule for secrets.
    enroll_token: Option<toml::Value>,
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

pub use crate::hub_client::ClientTls;
pub use fleetgate_daemon::{ConfigError, Secret};

/// The agent's settings: TOML key, flag and environment variable of each.
mod keys {
    use fleetgate_daemon::Key;
    pub const HUB: Key = Key::new("hub", "--hub", "FLEETGATE_HUB");
    pub const HUBS: Key = Key::new("hubs", "--hub", "FLEETGATE_HUB");
    pub const ENROLL_TOKEN: Key =
        Key::new("enroll_token", "--enroll-token", "FLEETGATE_ENROLL_TOKEN");
    pub const ENROLL_TOKEN_FILE: Key = Key::new(
        "enroll_token_file",
        "--enroll-token-file",
        "FLEETGATE_ENROLL_TOKEN_FILE",
    );
    pub const NODE: Key = Key::new("node", "--node", "FLEETGATE_NODE");
    pub const INTERVAL: Key = Key::new("interval", "--interval", "FLEETGATE_INTERVAL");
    pub const PUSH_TIMEOUT: Key =
        Key::new("push_timeout", "--push-timeout", "FLEETGATE_PUSH_TIMEOUT");
    pub const SCRAPE_TIMEOUT: Key = Key::new(
        "scrape_timeout",
        "--scrape-timeout",
        "FLEETGATE_SCRAPE_TIMEOUT",
    );
    pub const KEEP_ALIVE: Key = Key::new("keep_alive", "--keep-alive", "FLEETGATE_KEEP_ALIVE");
    pub const STATE_DIR: Key = Key::new("state_dir", "--state-dir", "FLEETGATE_STATE_DIR");
    pub const LABELS: Key = Key::new("labels", "--label", "FLEETGATE_LABELS");
    pub const COLLECTORS: Key = Key::new("collectors", "--collectors", "FLEETGATE_COLLECTORS");
    pub const DOCKER_SOCKET: Key = Key::new(
        "docker_socket",
        "--docker-socket",
        "FLEETGATE_DOCKER_SOCKET",
    );
    pub const TRITON_URL: Key = Key::new("triton_url", "--triton-url", "FLEETGATE_TRITON_URL");
    pub const SCRAPE_URLS: Key = Key::new("scrape_urls", "--scrape-url", "FLEETGATE_SCRAPE_URLS");
    pub const PROC_PATH: Key = Key::new("proc_path", "--proc-path", "FLEETGATE_PROC_PATH");
    pub const SYS_PATH: Key = Key::new("sys_path", "--sys-path", "FLEETGATE_SYS_PATH");
    pub const ROOTFS_PATH: Key = Key::new("rootfs_path", "--rootfs-path", "FLEETGATE_ROOTFS_PATH");
    pub const ONCE: Key = Key::new("once", "--once", "FLEETGATE_ONCE");
    pub const TLS_CERT: Key = Key::new("tls_cert", "--tls-cert", "FLEETGATE_TLS_CERT");
    pub const TLS_KEY: Key = Key::new("tls_key", "--tls-key", "FLEETGATE_TLS_KEY");
    pub const TLS_CA: Key = Key::new("tls_ca", "--tls-ca", "FLEETGATE_TLS_CA");
    pub const TEXTFILE_DIR: Key =
        Key::new("textfile_dir", "--textfile-dir", "FLEETGATE_TEXTFILE_DIR");
    pub const PROXY: Key = Key::new("proxy", "--proxy", "FLEETGATE_PROXY");
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

/// One hub the agent pushes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubTarget {
    /// Base URL without trailing slash (http or https), as configured: the `hub` label of the
    /// agent's push metrics.
    pub url: String,
    /// Enrollment token for this hub: its own `enroll_token_file`, else the agent's.
    pub enroll_token: Option<Secret>,
}

/// The validated configuration of the agent.
#[derive(Debug, Clone)]
pub struct Config {
    /// The hubs every snapshot goes to, at least one, each URL once, in the order given.
    pub hubs: Vec<HubTarget>,
    /// Node identity, the hub's `instance`/`node` label.
    pub node: String,
    /// Time between pushes.
    pub interval: Duration,
    /// Timeout of one request to the hub.
    pub push_timeout: Duration,
    /// Timeout of one scrape.
    pub scrape_timeout: Duration,
    /// How long an idle connection to a hub is kept for the next request.
    pub keep_alive: Duration,
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
    /// Client certificate and CA for TLS to the hub.
    pub tls: ClientTls,
    /// Directory of `*.prom` files for the textfile collector; `None` switches it off.
    pub textfile_dir: Option<PathBuf>,
    /// Proxy for requests to the hub; `None` leaves it to the environment.
    pub proxy: Option<ProxyUrl>,
}

/// Default push interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

impl Config {
    /// Loads the TOML file named by `--config` (if any), merges it under the flags and the
    /// environment, applies defaults and validates everything
    /// ([`fleetgate_daemon::settings`], the hub's rules too).
    pub fn from_args(args: Args) -> Result<(Mode, Config), ConfigError> {
        let (layers, file) = Layers::read::<FileConfig>(args.config.as_deref(), &["enroll_token"])?;
        let mode = match (args.command, args.once) {
            (Some(Command::Deregister), true) => {
                return Err(fleetgate_daemon::settings::error(
                    keys::ONCE,
                    &Origin::CommandLine,
                    "cannot be combined with deregister",
                ))
            }
            (Some(Command::Deregister), false) => Mode::Deregister,
            (_, true) => Mode::Once,
            (_, false) => Mode::Run,
        };

        // Needed only for the first enrollment at each hub.
        let enroll_token = layers.secret(
            keys::ENROLL_TOKEN,
            args.enroll_token,
            keys::ENROLL_TOKEN_FILE,
            args.enroll_token_file,
            file.enroll_token_file,
        )?;
        let hubs = hubs(&layers, args.hub, file.hub, file.hubs, enroll_token)?;

        let node = match layers.pick(keys::NODE, args.node, file.node) {
            Some(n) => validate_node(&n)?,
            None => validate_node(&Given {
                value: local_hostname(),
                key: keys::NODE,
                origin: Origin::Default,
            })?,
        };

        let duration = |key, flag, in_file, default| {
            let Some(given) = layers.pick(key, flag, in_file) else {
                return Ok(default);
            };
            let d = given.duration()?;
            if d < Duration::from_millis(10) {
                return Err(given.invalid(format!(
                    "duration {:?} is too short (at least 10ms)",
                    given.value
                )));
            }
            Ok(d)
        };
        let interval = duration(
            keys::INTERVAL,
            args.interval,
            file.interval,
            DEFAULT_INTERVAL,
        )?;
        let push_timeout = duration(
            keys::PUSH_TIMEOUT,
            args.push_timeout,
            file.push_timeout,
            Duration::from_secs(10),
        )?;
        let scrape_timeout = duration(
            keys::SCRAPE_TIMEOUT,
            args.scrape_timeout,
            file.scrape_timeout,
            Duration::from_secs(5),
        )?;
        let keep_alive = duration(
            keys::KEEP_ALIVE,
            args.keep_alive,
            file.keep_alive,
            crate::hub_client::DEFAULT_KEEP_ALIVE,
        )?;

        // `--label k=v` on the command line, a `[labels]` table in the file.
        let flag_labels = (!args.labels.is_empty()).then_some(args.labels);
        let file_labels = file
            .labels
            .map(|t| t.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
        let mut labels = BTreeMap::new();
        if let Some(given) = layers.pick(keys::LABELS, flag_labels, file_labels) {
            for item in given
                .value
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
            {
                let (k, v) = item.split_once('=').ok_or_else(|| {
                    given.invalid(format!("label {item:?} is not written as name=value"))
                })?;
                validate_label_name(k.trim(), &given)?;
                labels.insert(k.trim().to_string(), v.trim().to_string());
            }
        }

        let names = layers.pick_or(
            keys::COLLECTORS,
            args.collectors,
            file.collectors,
            CollectorKind::ALL
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
        );
        let mut collectors = Vec::new();
        for name in names
            .value
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        {
            let kind = CollectorKind::from_name(name).ok_or_else(|| {
                names.invalid(format!(
                    "unknown collector {name:?} (known: host, gpu, containers, triton)"
                ))
            })?;
            if !collectors.contains(&kind) {
                collectors.push(kind);
            }
        }

        let triton = layers.pick_or(
            keys::TRITON_URL,
            args.triton_url,
            file.triton_url,
            "http://127.0.0.1:8002/metrics".into(),
        );
        let triton_url = validate_url(&triton.value, &triton)?;

        let flag_urls = (!args.scrape_urls.is_empty()).then_some(args.scrape_urls);
        let mut scrape_urls = Vec::new();
        if let Some(given) = layers.pick(keys::SCRAPE_URLS, flag_urls, file.scrape_urls) {
            for url in given
                .value
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
            {
                scrape_urls.push(validate_url(url, &given)?);
            }
        }

        let tls = client_tls(
            &hubs,
            layers.pick(keys::TLS_CERT, args.tls_cert, file.tls_cert),
            layers.pick(keys::TLS_KEY, args.tls_key, file.tls_key),
            layers.pick(keys::TLS_CA, args.tls_ca, file.tls_ca),
        )?;
        let textfile_dir =
            match layers.pick(keys::TEXTFILE_DIR, args.textfile_dir, file.textfile_dir) {
                Some(dir) if dir.value.as_os_str().is_empty() => {
                    return Err(dir.invalid(
                        "must not be empty (leave it unset to switch the textfile collector off)",
                    ))
                }
                Some(dir) => Some(dir.value),
                None => None,
            };
        let proxy = match layers.pick(keys::PROXY, args.proxy, file.proxy) {
            Some(given) => {
                let proxy = ProxyUrl::parse(&given.value).map_err(|e| given.invalid(e))?;
                if proxy.has_password() && matches!(given.origin, Origin::File(_)) {
                    return Err(given.invalid(
                        "a configuration file may not hold a secret: give a proxy URL with a \
                         password in FLEETGATE_PROXY or HTTPS_PROXY instead",
                    ));
                }
                Some(proxy)
            }
            None => None,
        };

        let path = |key, flag, in_file, default: &str| {
            layers
                .pick_or(key, flag, in_file, PathBuf::from(default))
                .value
        };
        let config = Config {
            hubs,
            node,
            interval,
            push_timeout,
            scrape_timeout,
            keep_alive,
            state_dir: path(
                keys::STATE_DIR,
                args.state_dir,
                file.state_dir,
                "/var/lib/fleetgate-agent",
            ),
            labels,
            collectors,
            docker_socket: path(
                keys::DOCKER_SOCKET,
                args.docker_socket,
                file.docker_socket,
                "/var/run/docker.sock",
            ),
            triton_url,
            scrape_urls,
            host: HostMounts {
                proc: path(keys::PROC_PATH, args.proc_path, file.proc_path, "/proc"),
                sys: path(keys::SYS_PATH, args.sys_path, file.sys_path, "/sys"),
                rootfs: path(keys::ROOTFS_PATH, args.rootfs_path, file.rootfs_path, "/"),
            },
            tls,
            textfile_dir,
            proxy,
        };
        Ok((mode, config))
    }

    /// How requests to the hub leave this machine, for the start-up log line.
    pub fn outbound(&self) -> String {
        if let Some(p) = &self.proxy {
            return format!("proxy {} (--proxy)", p.redacted());
        }
        let set: Vec<&str> = [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ]
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        .collect();
        if set.is_empty() {
            "direct".into()
        } else {
            format!(
                "proxy from {} unless NO_PROXY matches the hub",
                set.join(", ")
            )
        }
    }

    /// Whether `kind` is in the enabled collector list.
    pub fn enabled(&self, kind: CollectorKind) -> bool {
        self.collectors.contains(&kind)
    }
}

/// The hubs: a comma-separated list from the command line (or the environment), else the file's
/// `hub` list or its `[[hubs]]` tables, else the local hub. Every hub in a list shares
/// `enroll_token`; a `[[hubs]]` table may name a token file of its own.
fn hubs(
    layers: &Layers,
    flag: Option<String>,
    in_file: Option<String>,
    tables: Option<Vec<HubTable>>,
    enroll_token: Option<Secret>,
) -> Result<Vec<HubTarget>, ConfigError> {
    let tables = layers.pick(keys::HUBS, None, tables);
    let list = match (layers.pick(keys::HUB, flag, in_file), tables) {
        (Some(list), Some(_)) if list.origin != Origin::CommandLine => {
            return Err(
                list.invalid("give the hubs either as the hub key or as [[hubs]] tables, not both")
            )
        }
        (Some(list), _) => list,
        (None, Some(tables)) => return hub_tables(tables, enroll_token),
        (None, None) => Given {
            value: "http://127.0.0.1:8000".into(),
            key: keys::HUB,
            origin: Origin::Default,
        },
    };
    let mut hubs = Vec::new();
    for url in list
        .value
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let url = validate_url(url, &list)?;
        if hubs.iter().any(|h: &HubTarget| same_hub(&h.url, &url)) {
            return Err(list.invalid(format!("hub {url:?} is listed twice")));
        }
        hubs.push(HubTarget {
            url,
            enroll_token: enroll_token.clone(),
        });
    }
    if hubs.is_empty() {
        return Err(list.invalid("no hub URL given"));
    }
    Ok(hubs)
}

/// The file's `[[hubs]]` tables; errors name the table (`hubs[1].url`, counting from 0).
fn hub_tables(
    tables: Given<Vec<HubTable>>,
    enroll_token: Option<Secret>,
) -> Result<Vec<HubTarget>, ConfigError> {
    let entry_error = |i: usize, field: &str, problem: String| {
        let mut e = tables.invalid(problem);
        e.setting = format!("{}[{i}].{field}", e.setting);
        e
    };
    let mut hubs = Vec::new();
    for (i, table) in tables.value.iter().enumerate() {
        if table.enroll_token.is_some() {
            return Err(entry_error(
                i,
                "enroll_token",
                "a configuration file may not hold a secret: put it in a file of its own \
                 (mode 0600) and set enroll_token_file to that file's path"
                    .into(),
            ));
        }
        let Some(url) = &table.url else {
            return Err(entry_error(
                i,
                "url",
                "missing: every [[hubs]] table needs a url".into(),
            ));
        };
        let url = validate_url(url, &tables).map_err(|e| entry_error(i, "url", e.problem))?;
        if hubs.iter().any(|h: &HubTarget| same_hub(&h.url, &url)) {
            return Err(entry_error(
                i,
                "url",
                format!("hub {url:?} is listed twice"),
            ));
        }
        let enroll_token = match &table.enroll_token_file {
            Some(file) => {
                let given = Given {
                    value: file.clone(),
                    key: keys::ENROLL_TOKEN_FILE,
                    origin: tables.origin.clone(),
                };
                let token = fleetgate_daemon::settings::read_secret(&given)
                    .map_err(|e| entry_error(i, "enroll_token_file", e.problem))?;
                Some(token)
            }
            None => enroll_token.clone(),
        };
        hubs.push(HubTarget { url, enroll_token });
    }
    if hubs.is_empty() {
        return Err(tables.invalid("no hub given: the [[hubs]] list is empty"));
    }
    Ok(hubs)
}

/// Whether two validated hub URLs name the same hub (scheme, host and port compared as URLs,
/// so `http://Hub:80` and `http://hub` are one).
fn same_hub(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The TLS files, each checked to be a readable PEM file; a certificate needs its key, and
/// either needs every hub to be an `https://` one (the same files are presented to each).
fn client_tls(
    hubs: &[HubTarget],
    cert: Option<Given<PathBuf>>,
    key: Option<Given<PathBuf>>,
    ca: Option<Given<PathBuf>>,
) -> Result<ClientTls, ConfigError> {
    for given in [&cert, &key, &ca].into_iter().flatten() {
        if let Some(hub) = hubs.iter().find(|h| !h.url.starts_with("https://")) {
            return Err(given.invalid(format!(
                "TLS settings need an https:// hub URL, but the hub is {}",
                hub.url
            )));
        }
        let text = std::fs::read_to_string(&given.value)
            .map_err(|e| given.invalid(format!("cannot read {}: {e}", given.value.display())))?;
        if !text.contains("-----BEGIN ") {
            return Err(given.invalid(format!(
                "{} is not a PEM file (no -----BEGIN line)",
                given.value.display()
            )));
        }
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c.value, k.value)),
        (None, None) => None,
        (Some(c), None) => return Err(c.invalid("is set but tls_key (--tls-key) is not")),
        (None, Some(k)) => return Err(k.invalid("is set but tls_cert (--tls-cert) is not")),
    };
    Ok(ClientTls {
        identity,
        ca: ca.map(|c| c.value),
    })
}

fn validate_url<T>(url: &str, given: &Given<T>) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| given.invalid(format!("invalid URL {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(given.invalid(format!("URL {url:?} must start with http:// or https://")));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(given.invalid(format!("URL {url:?} has no host")));
    }
    Ok(url.trim().trim_end_matches('/').to_string())
}

fn validate_node(given: &Given<String>) -> Result<String, ConfigError> {
    let node = given.value.trim().to_string();
    if node.is_empty() {
        return Err(given.invalid("node name is empty"));
    }
    if node.len() > 253 || node.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(given.invalid(format!(
            "node name {node:?} must be at most 253 characters without spaces"
        )));
    }
    Ok(node)
}

fn validate_label_name<T>(name: &str, given: &Given<T>) -> Result<(), ConfigError> {
    if !fleetgate_shared::names::is_valid_label_name(name) || name.starts_with("__") {
        return Err(given.invalid(format!(
            "invalid label name {name:?} (must match [a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        )));
    }
    if matches!(name, "instance" | "node" | "job") {
        return Err(given.invalid(format!(
            "label {name:?} is set by the hub or Prometheus and cannot be configured"
        )));
    }
    Ok(())
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
        assert_eq!(urls(&c), ["http://127.0.0.1:8000"]);
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.keep_alive, Duration::from_secs(20));
        assert_eq!(c.collectors, CollectorKind::ALL.to_vec());
        assert_eq!(c.triton_url, "http://127.0.0.1:8002/metrics");
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/fleetgate-agent"));
        assert_eq!(c.host.proc, PathBuf::from("/proc"));
        assert!(c.hubs[0].enroll_token.is_none());
    }

    #[test]
    fn flags_parse() {
        let (mode, c) = load(&[
            "--once",
            "--node",
            "n1",
            "--interval",
            "1m",
            "--keep-alive",
            "75s",
            "--label",
            "dc=fra",
            "--label",
            "rack=r1",
            "--collectors",
            "host,triton",
            "--scrape-url",
            "http://127.0.0.1:9100/metrics",
            "--enroll-token",
            "s3cret-enroll-token-0",
        ])
        .unwrap();
        assert_eq!(mode, Mode::Once);
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.keep_alive, Duration::from_secs(75));
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
        let names = |argv: &[&str], setting: &str, problem: &str| {
            let mut full = vec!["--node", "n"];
            full.extend_from_slice(argv);
            let e = err(&full);
            assert!(
                e.starts_with(&format!("{setting}: {problem}")),
                "{argv:?}: {e}"
            );
        };
        names(
            &["--interval", "abc"],
            "--interval / FLEETGATE_INTERVAL",
            "invalid duration \"abc\"",
        );
        names(
            &["--interval", "1ms"],
            "--interval / FLEETGATE_INTERVAL",
            "duration",
        );
        names(
            &["--keep-alive", "forever"],
            "--keep-alive / FLEETGATE_KEEP_ALIVE",
            "invalid duration \"forever\"",
        );
        names(&["--hub", "ftp://x"], "--hub / FLEETGATE_HUB", "URL");
        names(
            &["--hub", "not a url"],
            "--hub / FLEETGATE_HUB",
            "invalid URL",
        );
        names(
            &["--label", "1x=y"],
            "--label / FLEETGATE_LABELS",
            "invalid label name",
        );
        names(
            &["--label", "novalue"],
            "--label / FLEETGATE_LABELS",
            "label",
        );
        names(
            &["--label", "instance=x"],
            "--label / FLEETGATE_LABELS",
            "label",
        );
        names(
            &["--collectors", "host,disk"],
            "--collectors / FLEETGATE_COLLECTORS",
            "unknown collector \"disk\"",
        );
        names(
            &["--triton-url", "localhost:8002"],
            "--triton-url / FLEETGATE_TRITON_URL",
            "",
        );
        names(
            &["--scrape-url", "x"],
            "--scrape-url / FLEETGATE_SCRAPE_URLS",
            "",
        );
        names(
            &["--enroll-token-file", "/nonexistent/t"],
            "--enroll-token-file / FLEETGATE_ENROLL_TOKEN_FILE",
            "cannot read",
        );
        names(
            &["--enroll-token", "short"],
            "--enroll-token / FLEETGATE_ENROLL_TOKEN",
            "must be at least 16",
        );
        let e = err(&["--node", "a b"]);
        assert!(e.starts_with("--node / FLEETGATE_NODE: "), "{e}");
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
        assert_eq!(urls(&c), ["https://hub.example:8000"]);
        assert_eq!(c.node, "from-file");
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.collectors, vec![CollectorKind::Host]);
        assert_eq!(c.labels.get("team").map(String::as_str), Some("ml"));
        assert_eq!(c.scrape_urls.len(), 1);

        std::fs::write(&path, "interval = \"soon\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(
            e.starts_with(&format!("{p}: interval: invalid duration \"soon\"")),
            "{e}"
        );
        std::fs::write(&path, "intervall = \"5s\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(
            e.starts_with("--config / FLEETGATE_CONFIG (") && e.contains("intervall"),
            "{e}"
        );
        // The enrollment token only ever as a file of its own.
        std::fs::write(&path, "enroll_token = \"0123456789abcdef\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(e.contains("enroll_token_file"), "{e}");
    }

    #[test]
    fn tls_files_are_checked_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("c.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, "nope").unwrap();
        let (p, j) = (pem.to_str().unwrap(), junk.to_str().unwrap());
        let https = ["--node", "n", "--hub", "https://hub:8000"];
        let (_, c) = load(
            &[
                &https[..],
                &["--tls-cert", p, "--tls-key", p, "--tls-ca", p],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(c.tls.identity, Some((pem.clone(), pem.clone())));
        assert_eq!(c.tls.ca, Some(pem.clone()));
        let e = err(&[&https[..], &["--tls-cert", p]].concat());
        assert!(
            e.starts_with("--tls-cert / FLEETGATE_TLS_CERT: ") && e.contains("tls_key"),
            "{e}"
        );
        let e = err(&[&https[..], &["--tls-ca", j]].concat());
        assert!(
            e.starts_with("--tls-ca / FLEETGATE_TLS_CA: ") && e.contains("not a PEM"),
            "{e}"
        );
        let e = err(&["--node", "n", "--tls-ca", p]);
        assert!(e.contains("https://"), "{e}");
        // The same files go to every hub of a list: each must be https://.
        let (_, c) = load(&[
            "--node",
            "n",
            "--hub",
            "https://a:1,https://b:2",
            "--tls-ca",
            p,
        ])
        .unwrap();
        assert_eq!(c.hubs.len(), 2);
        assert_eq!(c.tls.ca, Some(pem.clone()));
        let e = err(&[
            "--node",
            "n",
            "--hub",
            "https://a:1,http://b:2",
            "--tls-ca",
            p,
        ]);
        assert!(e.contains("the hub is http://b:2"), "{e}");
    }

    #[test]
    fn textfile_dir_and_proxy() {
        let (_, c) = load(&["--node", "n"]).unwrap();
        assert_eq!((c.textfile_dir.clone(), c.proxy.clone()), (None, None));
        let (_, c) = load(&[
            "--node",
            "n",
            "--textfile-dir",
            "/var/lib/prometheus/node-exporter",
            "--proxy",
            "http://user:s3cret@proxy.corp:3128",
        ])
        .unwrap();
        assert_eq!(
            c.textfile_dir,
            Some(PathBuf::from("/var/lib/prometheus/node-exporter"))
        );
        assert!(c.outbound().contains("user:***@proxy.corp:3128"));
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = err(&["--node", "n", "--proxy", "socks5://p:1080"]);
        assert!(e.starts_with("--proxy / FLEETGATE_PROXY: "), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let p = path.to_str().unwrap();
        std::fs::write(
            &path,
            "proxy = \"http://proxy.corp:3128\"\ntextfile_dir = \"/tf\"\nkeep_alive = \"50s\"\n",
        )
        .unwrap();
        let (_, c) = load(&["--config", p, "--node", "n"]).unwrap();
        assert_eq!(c.proxy.unwrap().redacted(), "http://proxy.corp:3128/");
        assert_eq!(c.textfile_dir, Some(PathBuf::from("/tf")));
        assert_eq!(c.keep_alive, Duration::from_secs(50));
        std::fs::write(&path, "textfile_dir = \"\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(e.starts_with(&format!("{p}: textfile_dir: ")), "{e}");
        // A password is a secret: not in the file.
        std::fs::write(&path, "proxy = \"http://u:s3cret@proxy.corp:3128\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(
            e.starts_with(&format!("{p}: proxy: ")) && e.contains("secret"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "enroll-token-0123456789\n").unwrap();
        let (_, c) = load(&["--node", "n", "--enroll-token-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(
            c.hubs[0].enroll_token.as_ref().unwrap().expose(),
            "enroll-token-0123456789"
        );
    }

    fn urls(c: &Config) -> Vec<&str> {
        c.hubs.iter().map(|h| h.url.as_str()).collect()
    }

    #[test]
    fn several_hubs_as_a_list_share_the_enrollment_token() {
        let (_, c) = load(&[
            "--node",
            "n",
            "--hub",
            " http://hub-a:8000/, https://hub-b.example:8443 ,",
            "--enroll-token",
            "enroll-token-0123456789",
        ])
        .unwrap();
        assert_eq!(
            urls(&c),
            ["http://hub-a:8000", "https://hub-b.example:8443"]
        );
        for h in &c.hubs {
            assert_eq!(
                h.enroll_token.as_ref().map(Secret::expose),
                Some("enroll-token-0123456789")
            );
        }
        let names = |argv: &[&str], problem: &str| {
            let mut full = vec!["--node", "n"];
            full.extend_from_slice(argv);
            let e = err(&full);
            assert!(
                e.starts_with(&format!("--hub / FLEETGATE_HUB: {problem}")),
                "{argv:?}: {e}"
            );
        };
        names(
            &["--hub", "http://a:1,ftp://b"],
            "URL \"ftp://b\" must start",
        );
        names(
            &["--hub", "http://a:80,http://A/"],
            "hub \"http://A\" is listed twice",
        );
        names(&["--hub", " , "], "no hub URL given");
    }

    #[test]
    fn hub_tables_in_the_file_each_with_its_own_token() {
        let dir = tempfile::tempdir().unwrap();
        let token_b = dir.path().join("b.token");
        std::fs::write(&token_b, "token-for-hub-b-0123456789\n").unwrap();
        let path = dir.path().join("agent.toml");
        let p = path.to_str().unwrap();
        std::fs::write(
            &path,
            format!(
                "node = \"n\"\n[[hubs]]\nurl = \"http://hub-a:8000\"\n\n[[hubs]]\nurl = \"http://hub-b:8000/\"\nenroll_token_file = \"{}\"\n",
                token_b.display()
            ),
        )
        .unwrap();
        let (_, c) = load(&["--config", p, "--enroll-token", "shared-token-0123456789"]).unwrap();
        assert_eq!(urls(&c), ["http://hub-a:8000", "http://hub-b:8000"]);
        let tokens: Vec<_> = c
            .hubs
            .iter()
            .map(|h| h.enroll_token.as_ref().unwrap().expose())
            .collect();
        assert_eq!(
            tokens,
            ["shared-token-0123456789", "token-for-hub-b-0123456789"]
        );
        assert!(
            !format!("{c:?}").contains("0123456789"),
            "tokens never printed"
        );

        // The command line replaces the file's list.
        let (_, c) = load(&["--config", p, "--hub", "http://hub-c:8000"]).unwrap();
        assert_eq!(urls(&c), ["http://hub-c:8000"]);

        let refused = |text: &str, setting: &str, problem: &str| {
            std::fs::write(&path, text).unwrap();
            let e = err(&["--config", p, "--node", "n"]);
            assert!(
                e.starts_with(&format!("{p}: {setting}: {problem}")),
                "{text}: {e}"
            );
        };
        refused(
            "hub = \"http://a:1\"\n[[hubs]]\nurl = \"http://b:1\"\n",
            "hub",
            "give the hubs either",
        );
        refused(
            "[[hubs]]\nurl = \"http://a:1\"\n[[hubs]]\nurl = \"a:1\"\n",
            "hubs[1].url",
            "URL \"a:1\" must start",
        );
        refused(
            "[[hubs]]\nurl = \"http://a:1\"\n[[hubs]]\nurl = \"http://a:1/\"\n",
            "hubs[1].url",
            "hub \"http://a:1\" is listed twice",
        );
        refused(
            "[[hubs]]\nenroll_token_file = \"/x\"\n",
            "hubs[0].url",
            "missing",
        );
        refused(
            "[[hubs]]\nurl = \"http://a:1\"\nenroll_token = \"0123456789abcdef\"\n",
            "hubs[0].enroll_token",
            "a configuration file may not hold a secret",
        );
        refused(
            "[[hubs]]\nurl = \"http://a:1\"\nenroll_token_file = \"/nonexistent/t\"\n",
            "hubs[0].enroll_token_file",
            "cannot read",
        );
        refused("hubs = []\n", "hubs", "no hub given");
        std::fs::write(&path, "[[hubs]]\nurl = \"http://a:1\"\nurll = \"x\"\n").unwrap();
        let e = err(&["--config", p, "--node", "n"]);
        assert!(e.contains("urll"), "{e}");
    }
}
