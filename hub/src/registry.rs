//! Node identities: who may push, under which name and labels. Push tokens are kept only as
//! SHA-256 digests; the whole registry is persisted to `DATA_DIR/nodes.json` with an atomic
//! write (temp file, fsync, rename, fsync of the directory) before any change is acknowledged.
//! Concurrent changes share one write (group commit), so enrolling a large fleet at once
//! stays linear in the fleet's size.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::tokens::{self, TokenHash};

/// File name of the persisted registry inside the data directory.
pub const FILE_NAME: &str = "nodes.json";

/// What a node sends to `/add_node`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// Node name; becomes the instance and node labels of its series.
    pub node: String,
    /// Hostname, shown in `/nodes` only.
    #[serde(default)]
    pub hostname: Option<String>,
    /// IP address, shown in `/nodes` only.
    #[serde(default)]
    pub ip: Option<String>,
    /// Labels attached to every series of the node.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Enrollment {
    /// Checks the name and labels; `reserved` are the label names the hub sets itself.
    pub fn validate(&self, reserved: &[&str], max_value_len: usize) -> Result<(), String> {
        let n = &self.node;
        if n.is_empty() || n.len() > 253 {
            return Err(format!("node name must be 1 to 253 bytes, got {}", n.len()));
        }
        if n.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "node name {n:?} contains whitespace or control characters"
            ));
        }
        for (name, value) in &self.labels {
            if !fleetgate_shared::names::is_valid_label_name(name) || name.starts_with("__") {
                return Err(format!("invalid label name {name:?}"));
            }
            if reserved.contains(&name.as_str()) {
                return Err(format!(
                    "label {name:?} is set by the hub from the node name"
                ));
            }
            if value.len() > max_value_len {
                return Err(format!(
                    "value of label {name:?} is {} bytes, longer than the limit of {max_value_len}",
                    value.len()
                ));
            }
        }
        Ok(())
    }
}

/// One node's identity as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Node name, unique in the registry.
    pub node: String,
    /// Hex SHA-256 of the current push token; empty while the node holds none (re-admitted
    /// after a removal and not enrolled again yet).
    pub token_sha256: String,
    /// Enrollment labels added to every series.
    pub labels: BTreeMap<String, String>,
    /// Hostname reported at enrollment.
    pub hostname: Option<String>,
    /// IP reported at enrollment.
    pub ip: Option<String>,
    /// Removed with `/remove_node`: token revoked, re-adding needs the admin token.
    pub removed: bool,
    /// Increases on every enrollment, so pushes authenticated under an older token can be told
    /// apart from the current one and sequence numbers restart.
    pub epoch: u64,
}

/// Why an enrollment or removal was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The node was removed; only the admin token may bring it back.
    #[error("node {0:?} was removed; re-adding it needs the admin token")]
    RemovedNeedsAdmin(String),
    /// No node of that name.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// Re-admitting a node that is not removed.
    #[error("node {0:?} is not removed; there is nothing to re-admit")]
    NotRemoved(String),
    /// Persisting the registry failed; nothing changed.
    #[error("could not persist the registry: {0}")]
    Io(#[from] io::Error),
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    nodes: Vec<NodeIdentity>,
}

#[derive(Debug, Default, Clone)]
struct State {
    nodes: BTreeMap<String, Arc<NodeIdentity>>,
    by_token: HashMap<TokenHash, Arc<NodeIdentity>>,
}

/// The registry of node identities; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    /// `DATA_DIR/nodes.json`.
    path: PathBuf,
    /// Identities on disk; pushes only take the read lock.
    state: RwLock<State>,
    /// Changes accepted but not yet on disk, and who writes them.
    staged: Mutex<Staged>,
    /// Signalled when a write finishes.
    written: Condvar,
    /// Writes of `nodes.json` so far.
    writes: std::sync::atomic::AtomicU64,
}

/// Group commit: every change is applied to `state` at once, in order, and waits until a
/// write that contains it is on disk. One waiting caller writes at a time, everything staged
/// so far in one file, so enrolling a fleet costs one write per batch of concurrent
/// enrollments instead of one per node (each write is the whole registry).
#[derive(Debug, Default)]
struct Staged {
    /// The identities with every accepted change, written or not.
    state: State,
    /// Number of the next change.
    next: u64,
    /// Changes accepted since the last write started.
    pending: Vec<u64>,
    /// Outcome of written changes not yet collected by their caller.
    done: HashMap<u64, Result<(), (io::ErrorKind, String)>>,
    /// A caller is writing.
    writing: bool,
}

impl Registry {
    /// Loads `DATA_DIR/nodes.json`, or starts empty when it does not exist yet.
    pub fn open(data_dir: &Path) -> io::Result<Registry> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let mut state = State::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let disk: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                for id in disk.nodes {
                    state.insert(Arc::new(id));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Registry {
            path,
            staged: Mutex::new(Staged {
                state: state.clone(),
                ..Staged::default()
            }),
            state: RwLock::new(state),
            written: Condvar::new(),
            writes: Default::default(),
        })
    }

    /// The identity a push token belongs to, if it is current.
    pub fn authenticate(&self, token: &str) -> Option<Arc<NodeIdentity>> {
        let digest = tokens::hash(token);
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let id = state.by_token.get(&digest)?;
        // The map lookup found it by digest; confirm with a constant-time comparison of the
        // stored digest so no early-exit comparison ever touches a token.
        let stored = decode_digest(&id.token_sha256)?;
        (tokens::digests_equal(&stored, &digest) && !id.removed).then(|| Arc::clone(id))
    }

    /// Registers (or re-registers) a node and returns its new push token; any previous token
    /// of the node stops working. `admin` says whether the caller used the admin token.
    pub fn enroll(
        &self,
        e: Enrollment,
        admin: bool,
    ) -> Result<(String, Arc<NodeIdentity>), RegistryError> {
        let token = tokens::generate();
        let id = self.change(|next| {
            let previous = next.nodes.get(&e.node).cloned();
            if previous.as_ref().is_some_and(|p| p.removed) && !admin {
                return Err(RegistryError::RemovedNeedsAdmin(e.node));
            }
            let id = Arc::new(NodeIdentity {
                token_sha256: hex::encode(tokens::hash(&token)),
                labels: e.labels,
                hostname: e.hostname,
                ip: e.ip,
                removed: false,
                epoch: previous.as_ref().map_or(1, |p| p.epoch + 1),
                node: e.node,
            });
            if let Some(p) = &previous {
                next.remove_token(p);
            }
            next.insert(Arc::clone(&id));
            Ok(Some(id))
        })?;
        let id = id.ok_or_else(|| io::Error::other("enrollment lost"))?;
        Ok((token, id))
    }

    /// Marks a node removed and revokes its token; returns the identity as it was.
    pub fn remove(&self, node: &str) -> Result<Arc<NodeIdentity>, RegistryError> {
        let mut was = None;
        self.change(|next| {
            let current = next
                .nodes
                .get(node)
                .cloned()
                .ok_or_else(|| RegistryError::UnknownNode(node.to_string()))?;
            was = Some(Arc::clone(&current));
            if current.removed {
                return Ok(None);
            }
            next.remove_token(&current);
            let mut removed = (*current).clone();
            removed.removed = true;
            next.nodes.insert(node.to_string(), Arc::new(removed));
            Ok(Some(current))
        })?;
        was.ok_or_else(|| RegistryError::UnknownNode(node.to_string()))
    }

    /// Lets a removed node enroll again with the ordinary enrollment token, so its agent comes
    /// back when restarted. Its old push token stays revoked (it may be why the node was
    /// removed): the node is listed again, without a token, until it enrolls.
    pub fn readmit(&self, node: &str) -> Result<Arc<NodeIdentity>, RegistryError> {
        self.change(|next| {
            let current = next
                .nodes
                .get(node)
                .cloned()
                .ok_or_else(|| RegistryError::UnknownNode(node.to_string()))?;
            if !current.removed {
                return Err(RegistryError::NotRemoved(node.to_string()));
            }
            let readmitted = Arc::new(NodeIdentity {
                token_sha256: String::new(),
                removed: false,
                ..(*current).clone()
            });
            next.insert(Arc::clone(&readmitted));
            Ok(Some(readmitted))
        })?
        .ok_or_else(|| RegistryError::UnknownNode(node.to_string()))
    }

    /// One node's identity.
    pub fn get(&self, node: &str) -> Option<Arc<NodeIdentity>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .get(node)
            .cloned()
    }

    /// Every identity, removed ones included, sorted by node name.
    pub fn list(&self) -> Vec<Arc<NodeIdentity>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .nodes
            .values()
            .cloned()
            .collect()
    }

    /// Applies `apply` to the staged identities and returns once the change is on disk and
    /// current. `Ok(None)` from `apply` changed nothing and returns at once; an error from
    /// `apply` is returned and nothing changes. A failed write fails every change it carried
    /// and every change staged on top of them, and the staged state returns to what is on
    /// disk: nothing is acknowledged before it is persisted.
    fn change<T>(
        &self,
        apply: impl FnOnce(&mut State) -> Result<Option<T>, RegistryError>,
    ) -> Result<Option<T>, RegistryError> {
        let mut staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
        let Some(out) = apply(&mut staged.state)? else {
            return Ok(None);
        };
        let ticket = staged.next;
        staged.next += 1;
        staged.pending.push(ticket);
        loop {
            if let Some(result) = staged.done.remove(&ticket) {
                return result
                    .map(|()| Some(out))
                    // The kind survives, so a full or read-only disk is still named as such.
                    .map_err(|(kind, message)| io::Error::new(kind, message).into());
            }
            if staged.writing {
                staged = self.written.wait(staged).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            staged.writing = true;
            let batch = std::mem::take(&mut staged.pending);
            let next = staged.state.clone();
            drop(staged);
            let written = self.persist(&next);
            staged = self.staged.lock().unwrap_or_else(|p| p.into_inner());
            staged.writing = false;
            let result = match written {
                Ok(()) => {
                    *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
                    Ok(())
                }
                Err(e) => {
                    // What was staged after this batch built on it: it fails with it.
                    let later = std::mem::take(&mut staged.pending);
                    let failure = (e.kind(), e.to_string());
                    for t in later {
                        staged.done.insert(t, Err(failure.clone()));
                    }
                    staged.state = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
                    Err(failure)
                }
            };
            for t in batch {
                staged.done.insert(t, result.clone());
            }
            self.written.notify_all();
        }
    }

    /// Writes `state` to `nodes.json`: a crash at any point leaves either the old or the new
    /// file.
    fn persist(&self, state: &State) -> io::Result<()> {
        let disk = OnDisk {
            version: 1,
            nodes: state.nodes.values().map(|id| (**id).clone()).collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        fleetgate_daemon::write_atomic(&self.path, &bytes, 0o600)
    }
}

impl State {
    fn insert(&mut self, id: Arc<NodeIdentity>) {
        if !id.removed {
            if let Some(digest) = decode_digest(&id.token_sha256) {
                self.by_token.insert(digest, Arc::clone(&id));
            }
        }
        self.nodes.insert(id.node.clone(), id);
    }

    fn remove_token(&mut self, id: &NodeIdentity) {
        if let Some(digest) = decode_digest(&id.token_sha256) {
            self.by_token.remove(&digest);
        }
    }
}

fn decode_digest(hex_digest: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enrollment(node: &str) -> Enrollment {
        Enrollment {
            node: node.into(),
            labels: [("node_type".to_string(), "gpu".to_string())].into(),
            ..Enrollment::default()
        }
    }

    #[test]
    fn enroll_authenticate_reenroll_revokes() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (t1, id1) = reg.enroll(enrollment("a"), false).unwrap();
        assert_eq!(reg.authenticate(&t1).unwrap().node, "a");
        assert!(reg.authenticate("wrong").is_none());
        let (t2, id2) = reg.enroll(enrollment("a"), false).unwrap();
        assert!(reg.authenticate(&t1).is_none(), "old token revoked");
        assert!(reg.authenticate(&t2).is_some());
        assert!(id2.epoch > id1.epoch);
        assert!(!std::fs::read_to_string(dir.path().join(FILE_NAME))
            .unwrap()
            .contains(&t2));
    }

    #[test]
    fn removed_nodes_need_admin_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (ta, _) = reg.enroll(enrollment("a"), false).unwrap();
        let (tb, _) = reg.enroll(enrollment("b"), false).unwrap();
        reg.remove("b").unwrap();
        assert!(reg.authenticate(&tb).is_none());
        assert!(matches!(
            reg.remove("zzz"),
            Err(RegistryError::UnknownNode(_))
        ));
        assert!(matches!(
            reg.enroll(enrollment("b"), false),
            Err(RegistryError::RemovedNeedsAdmin(_))
        ));

        let reopened = Registry::open(dir.path()).unwrap();
        assert_eq!(
            reopened.authenticate(&ta).unwrap().labels["node_type"],
            "gpu"
        );
        assert!(reopened.authenticate(&tb).is_none());
        assert!(reopened.get("b").unwrap().removed);
        let (tb2, _) = reopened.enroll(enrollment("b"), true).unwrap();
        assert!(reopened.authenticate(&tb2).is_some());
    }

    #[test]
    fn concurrent_enrollments_share_writes_and_all_persist() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Arc::new(Registry::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let reg = Arc::clone(&reg);
                std::thread::spawn(move || reg.enroll(enrollment(&format!("n{i}")), false))
            })
            .collect();
        let tokens: Vec<String> = threads
            .into_iter()
            .map(|t| t.join().unwrap().unwrap().0)
            .collect();
        let writes = reg.writes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(writes <= 64, "{writes}");
        eprintln!("64 concurrent enrollments, {writes} writes");
        let reopened = Registry::open(dir.path()).unwrap();
        for t in &tokens {
            assert!(reopened.authenticate(t).is_some());
        }
        assert_eq!(reopened.list().len(), 64);
    }

    #[test]
    fn a_failed_write_acknowledges_nothing_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (ta, _) = reg.enroll(enrollment("a"), false).unwrap();
        // A directory where the file should go: the rename fails.
        let file = dir.path().join(FILE_NAME);
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert!(matches!(
            reg.enroll(enrollment("b"), false),
            Err(RegistryError::Io(_))
        ));
        assert!(matches!(reg.remove("a"), Err(RegistryError::Io(_))));
        assert!(reg.get("b").is_none());
        assert!(
            reg.authenticate(&ta).is_some(),
            "a's removal was not persisted"
        );
        std::fs::remove_dir(&file).unwrap();
        let (tc, _) = reg.enroll(enrollment("c"), false).unwrap();
        let reopened = Registry::open(dir.path()).unwrap();
        let names: Vec<String> = reopened.list().iter().map(|i| i.node.clone()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(reopened.authenticate(&ta).is_some());
        assert!(reopened.authenticate(&tc).is_some());
    }

    #[test]
    fn enrollment_validation_names_the_problem() {
        let mut e = enrollment("a");
        assert!(e.validate(&["instance", "node"], 10).is_ok());
        e.labels.insert("instance".into(), "x".into());
        assert!(e
            .validate(&["instance", "node"], 10)
            .unwrap_err()
            .contains("instance"));
        let e = Enrollment {
            node: "has space".into(),
            ..Enrollment::default()
        };
        assert!(e.validate(&[], 10).unwrap_err().contains("whitespace"));
        let mut e = enrollment("a");
        e.labels.insert("bad-name".into(), "x".into());
        assert!(e.validate(&[], 10).unwrap_err().contains("bad-name"));
    }

    #[test]
    fn readmitted_nodes_enroll_with_the_enrollment_token_but_keep_the_old_token_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        let (old, first) = reg.enroll(enrollment("a"), false).unwrap();
        assert!(matches!(
            reg.readmit("a"),
            Err(RegistryError::NotRemoved(_))
        ));
        assert!(matches!(
            reg.readmit("zzz"),
            Err(RegistryError::UnknownNode(_))
        ));
        reg.remove("a").unwrap();
        let back = reg.readmit("a").unwrap();
        assert!(!back.removed);
        assert_eq!(back.labels, first.labels);
        assert!(reg.authenticate(&old).is_none(), "old token stays revoked");
        // Nor does a restart bring it back.
        let reopened = Registry::open(dir.path()).unwrap();
        assert!(reopened.authenticate(&old).is_none());
        assert!(!reopened.get("a").unwrap().removed);
        let (new, again) = reopened.enroll(enrollment("a"), false).unwrap();
        assert!(reopened.authenticate(&new).is_some());
        assert!(again.epoch > first.epoch);
    }
}
