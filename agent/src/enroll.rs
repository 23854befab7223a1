//! Enrollment and the state kept between restarts, one directory per hub:
//! `STATE_DIR/hubs/<name>/push.token` (the push token alone, so operators can use it as it is)
//! and `STATE_DIR/hubs/<name>/enrollment.json` (which node and hub the token belongs to), where
//! `<name>` is derived from the hub's URL ([`hub_state_name`]). Both are written atomically with
//! mode 0600. A stored token is reused as long as node and hub are unchanged. A token that an
//! earlier version kept directly in `STATE_DIR` is moved into its hub's directory at start
//! ([`migrate_legacy`]), so an upgraded agent goes on pushing without enrolling again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret};
use crate::hub_client::Enrollment;

/// File holding the push token.
pub const TOKEN_FILE: &str = "push.token";
/// File holding the node and hub of the stored token.
pub const ENROLLMENT_FILE: &str = "enrollment.json";
/// Directory under the state dir with one directory per hub.
pub const HUBS_DIR: &str = "hubs";

/// The identity of a stored token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledAs {
    /// Node name the token was issued for.
    pub node: String,
    /// Hub base URL that issued it.
    pub hub: String,
}

/// A push token and what it was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The node's push token.
    pub token: Secret,
    /// Node and hub it belongs to.
    pub enrolled_as: EnrolledAs,
}

/// Reading or writing the state directory failed.
#[derive(Debug, thiserror::Error)]
#[error("state dir {path}: {source}")]
pub struct StateError {
    /// The file or directory involved.
    path: PathBuf,
    /// The I/O error.
    source: std::io::Error,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// Its path.
    dir: PathBuf,
}

impl StateDir {
    /// The state directory at `dir` (created on first save).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateDir { dir: dir.into() }
    }

    /// The directory of the hub at `url` under the agent's state dir `root`:
    /// `root/hubs/<hub_state_name(url)>`.
    pub fn for_hub(root: &Path, url: &str) -> Self {
        StateDir::new(root.join(HUBS_DIR).join(hub_state_name(url)))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn err(path: &Path, source: std::io::Error) -> StateError {
        StateError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The stored credentials, `None` when there are none (or they are incomplete).
    pub fn load(&self) -> Result<Option<Credentials>, StateError> {
        let token_path = self.dir.join(TOKEN_FILE);
        let meta_path = self.dir.join(ENROLLMENT_FILE);
        let token = match std::fs::read_to_string(&token_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::err(&token_path, e)),
        };
        let meta = match std::fs::read_to_string(&meta_path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::err(&meta_path, e)),
        };
        let Ok(enrolled_as) = serde_json::from_str::<EnrolledAs>(&meta) else {
            tracing::warn!(path = %meta_path.display(), "unreadable enrollment record, enrolling again");
            return Ok(None);
        };
        if token.is_empty() {
            return Ok(None);
        }
        Ok(Some(Credentials {
            token: Secret::new(token),
            enrolled_as,
        }))
    }

    /// Stores credentials: the record first, then the token, each written atomically.
    pub fn save(&self, creds: &Credentials) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Self::err(&self.dir, e))?;
        let meta = serde_json::to_vec_pretty(&creds.enrolled_as).unwrap_or_default();
        write_private(&self.dir.join(ENROLLMENT_FILE), &meta)?;
        let mut token = creds.token.expose().as_bytes().to_vec();
        token.push(b'\n');
        write_private(&self.dir.join(TOKEN_FILE), &token)
    }

    /// Forgets the stored credentials; a hub's directory left empty goes too.
    pub fn delete(&self) -> Result<(), StateError> {
        for name in [TOKEN_FILE, ENROLLMENT_FILE] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::err(&path, e)),
            }
        }
        if self.dir.parent().and_then(Path::file_name) == Some(HUBS_DIR.as_ref()) {
            // Only when empty: anything an operator put there stays.
            let _ = std::fs::remove_dir(&self.dir);
        }
        Ok(())
    }
}

/// The name of the directory under `STATE_DIR/hubs/` that keeps the push token for the hub at
/// `url`: its host and port (`hub-a.example_8000`; characters other than letters, digits, `.`
/// and `-` become `-`), a dash, and the first 8 hex digits of the SHA-256 of the URL as parsed
/// (lower-case scheme and host, default port left out, no trailing slash), so that two hubs on
/// one host and port behind different schemes or paths never share a directory, and the name
/// stays the same however the URL's case or trailing slash is written.
pub fn hub_state_name(url: &str) -> String {
    use sha2::{Digest, Sha256};
    let parsed = reqwest::Url::parse(url.trim()).ok();
    let normalized = parsed
        .as_ref()
        .map_or(url.trim(), reqwest::Url::as_str)
        .trim_end_matches('/');
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or("hub")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>();
    let port = parsed
        .as_ref()
        .and_then(reqwest::Url::port_or_known_default)
        .unwrap_or(0);
    let digest = Sha256::digest(normalized.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{host}_{port}-{hash}")
}

/// Moves a push token that an earlier version kept directly in the state dir `root`
/// (`root/push.token`, `root/enrollment.json`) into the directory of the hub it was issued by,
/// unless that directory already holds one. Returns the directory it went to, if it moved.
pub fn migrate_legacy(root: &Path) -> Result<Option<PathBuf>, StateError> {
    let legacy = StateDir::new(root);
    let Some(creds) = legacy.load()? else {
        return Ok(None);
    };
    let target = StateDir::for_hub(root, &creds.enrolled_as.hub);
    let moved = if target.load()?.is_none() {
        target.save(&creds)?;
        tracing::info!(hub = %creds.enrolled_as.hub, to = %target.dir.display(),
            "moved the stored push token into the hub's own state directory");
        Some(target.dir.clone())
    } else {
        None
    };
    legacy.delete()?;
    Ok(moved)
}

/// Every push token stored under `root/hubs/`, by directory name.
pub fn stored_tokens(root: &Path) -> Result<Vec<(StateDir, Credentials)>, StateError> {
    let hubs = root.join(HUBS_DIR);
    let entries = match std::fs::read_dir(&hubs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StateDir::err(&hubs, e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StateDir::err(&hubs, e))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    let mut stored = Vec::new();
    for dir in dirs {
        let state = StateDir::new(dir);
        if let Some(creds) = state.load()? {
            stored.push((state, creds));
        }
    }
    Ok(stored)
}

/// Writes a private file durably ([`fleetgate_daemon::write_atomic`], mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    fleetgate_daemon::write_atomic(path, bytes, 0o600).map_err(|e| StateDir::err(path, e))
}

/// What the agent sends to `/add_node`: the configured labels plus `node_type`, the hostname
/// and the primary IP (for operators).
pub fn enrollment(config: &Config, gpu_devices: u32) -> Enrollment {
    let mut labels: BTreeMap<String, String> = config.labels.clone();
    labels
        .entry("node_type".to_string())
        .or_insert_with(|| if gpu_devices > 0 { "gpu" } else { "cpu" }.to_string());
    let hostname = crate::config::local_hostname();
    Enrollment {
        node: config.node.clone(),
        hostname: (!hostname.is_empty()).then_some(hostname),
        ip: primary_ip(&config.host.proc),
        labels,
    }
}

/// The first IPv4 address of the interface that holds the default route (from
/// `/proc/net/route`), or of any non-loopback interface; learned without sending anything.
fn primary_ip(proc_path: &Path) -> Option<String> {
    let routes = std::fs::read_to_string(proc_path.join("net/route"))
        .or_else(|_| std::fs::read_to_string("/proc/net/route"))
        .unwrap_or_default();
    let default_iface = routes.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let iface = cols.next()?;
        (cols.next()? == "00000000").then(|| iface.to_string())
    });
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let v4 = |name: &str| {
        networks
            .iter()
            .filter(|(n, _)| n.as_str() == name)
            .flat_map(|(_, data)| data.ip_networks())
            .find(|ip| ip.addr.is_ipv4() && !ip.addr.is_loopback())
            .map(|ip| ip.addr.to_string())
    };
    if let Some(ip) = default_iface.as_deref().and_then(v4) {
        return Some(ip);
    }
    networks
        .values()
        .flat_map(|data| data.ip_networks())
        .find(|ip| ip.addr.is_ipv4() && !ip.addr.is_loopback())
        .map(|ip| ip.addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_round_trip_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        assert_eq!(state.load().unwrap(), None);
        let creds = Credentials {
            token: Secret::new("tok"),
            enrolled_as: EnrolledAs {
                node: "n1".into(),
                hub: "http://127.0.0.1:1".into(),
            },
        };
        state.save(&creds).unwrap();
        assert_eq!(state.load().unwrap(), Some(creds));
        for name in [TOKEN_FILE, ENROLLMENT_FILE] {
            let mode = std::fs::metadata(dir.path().join("state").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state/push.token")).unwrap(),
            "tok\n"
        );
        state.delete().unwrap();
        assert_eq!(state.load().unwrap(), None);
        state.delete().unwrap();
    }

    #[test]
    fn hub_state_names_are_stable_readable_and_distinct() {
        let a = hub_state_name("http://Hub-A.example:8000/");
        assert_eq!(a, hub_state_name("http://hub-a.example:8000"));
        assert!(a.starts_with("hub-a.example_8000-"), "{a}");
        assert_eq!(a.len(), "hub-a.example_8000-".len() + 8);
        // Fixed: the directory must keep its name across versions.
        assert_eq!(
            hub_state_name("http://127.0.0.1:8000"),
            "127.0.0.1_8000-63767aa5"
        );
        // The README's example.
        assert_eq!(
            hub_state_name("https://hub-a.example:8000"),
            "hub-a.example_8000-c30809de"
        );
        assert_eq!(
            hub_state_name("https://hub.example"),
            hub_state_name("https://hub.example:443/")
        );
        assert!(hub_state_name("https://hub.example").starts_with("hub.example_443-"));
        assert_ne!(
            hub_state_name("http://hub:8000"),
            hub_state_name("https://hub:8000")
        );
        assert_ne!(
            hub_state_name("http://hub:8000/a"),
            hub_state_name("http://hub:8000/b")
        );
        assert!(hub_state_name("http://[::1]:9000").starts_with("---1-_9000-"));
    }

    #[test]
    fn a_token_in_the_old_place_moves_into_its_hubs_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(migrate_legacy(root).unwrap(), None, "nothing stored");
        let creds = Credentials {
            token: Secret::new("old-token"),
            enrolled_as: EnrolledAs {
                node: "n1".into(),
                hub: "http://127.0.0.1:8000".into(),
            },
        };
        StateDir::new(root).save(&creds).unwrap();
        let moved = migrate_legacy(root).unwrap().unwrap();
        assert_eq!(moved, root.join("hubs").join("127.0.0.1_8000-63767aa5"));
        let per_hub = StateDir::for_hub(root, "http://127.0.0.1:8000");
        assert_eq!(per_hub.load().unwrap(), Some(creds.clone()));
        assert!(!root.join(TOKEN_FILE).exists() && !root.join(ENROLLMENT_FILE).exists());
        assert_eq!(migrate_legacy(root).unwrap(), None, "done once");
        let stored = stored_tokens(root).unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].1, creds);

        // A newer token already in the hub's directory wins over a stale one in the old place.
        let stale = Credentials {
            token: Secret::new("stale"),
            ..creds.clone()
        };
        StateDir::new(root).save(&stale).unwrap();
        assert_eq!(migrate_legacy(root).unwrap(), None);
        assert_eq!(per_hub.load().unwrap(), Some(creds));
        assert!(!root.join(TOKEN_FILE).exists());

        per_hub.delete().unwrap();
        assert!(!per_hub.path().exists(), "empty hub directory removed");
        assert!(stored_tokens(root).unwrap().is_empty());
    }
}
