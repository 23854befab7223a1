//! Enrollment and the state kept between restarts: `STATE_DIR/push.token` (the push token alone,
//! so operators can use it as it is) and `STATE_DIR/enrollment.json` (which node and hub the token
//! belongs to). Both are written atomically with mode 0600. A stored token is reused as long as
//! node and hub are unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Secret};
use crate::hub_client::Enrollment;

/// File holding the push token.
pub const TOKEN_FILE: &str = "push.token";
/// File holding the node and hub of the stored token.
pub const ENROLLMENT_FILE: &str = "enrollment.json";

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

    /// Forgets the stored credentials.
    pub fn delete(&self) -> Result<(), StateError> {
        for name in [TOKEN_FILE, ENROLLMENT_FILE] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Self::err(&path, e)),
            }
        }
        Ok(())
    }
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
}
