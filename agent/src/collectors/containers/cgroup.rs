//! What the Engine API does not tell about a container, read from the host's cgroup file
//! system: how many processes the kernel's OOM killer killed in it, and which run of it is
//! going on (Docker keeps a restarted container's id, but each run gets a new cgroup directory,
//! with a new inode).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The host's cgroup file system.
#[derive(Debug)]
pub struct CgroupFs {
    /// Where the hierarchies are mounted: `/sys/fs/cgroup`, or `<--sys-path>/fs/cgroup` when the
    /// agent runs in a container with the host's /sys mounted.
    root: PathBuf,
    /// Reused read buffer.
    text: String,
}

/// One container's memory cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryCgroup {
    /// The cgroup's directory.
    pub dir: PathBuf,
    /// The file that holds its `oom_kill` count: `memory.oom_control` on cgroup v1,
    /// `memory.events` on cgroup v2.
    file: &'static str,
}

impl CgroupFs {
    /// The cgroup file system mounted at `root`.
    pub fn new(root: PathBuf) -> CgroupFs {
        CgroupFs {
            root,
            text: String::new(),
        }
    }

    /// Where the hierarchies are mounted.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The hierarchy with the memory controller and the file holding the OOM kill count: the
    /// root itself when it is cgroup v2's unified hierarchy (it has `cgroup.controllers`),
    /// otherwise cgroup v1's `memory` hierarchy (also on hybrid hosts, whose `unified`
    /// hierarchy has no controllers).
    fn memory_hierarchy(&self) -> (PathBuf, &'static str) {
        if self.root.join("cgroup.controllers").is_file() {
            (self.root.clone(), "memory.events")
        } else {
            (self.root.join("memory"), "memory.oom_control")
        }
    }

    /// The memory cgroup of container `id` started with `cgroup_parent` (empty: Docker's
    /// default), under either cgroup driver; `None` when none of the places exists (the
    /// container is between two runs, or the host's cgroups are not visible to the agent).
    pub fn locate(&self, id: &str, cgroup_parent: &str) -> Option<MemoryCgroup> {
        let (base, file) = self.memory_hierarchy();
        candidates(id, cgroup_parent)
            .into_iter()
            .map(|relative| base.join(relative))
            .find(|dir| dir.join(file).is_file())
            .map(|dir| MemoryCgroup { dir, file })
    }

    /// The cgroup's identity now (its directory's inode); `None` while it does not exist.
    pub fn identity(&self, cgroup: &MemoryCgroup) -> Option<u64> {
        std::fs::metadata(&cgroup.dir).ok().map(|m| m.ino())
    }

    /// Processes the OOM killer killed in the cgroup since it was created; `None` when it is
    /// gone or the kernel keeps no count (cgroup v1 before Linux 4.13).
    pub fn oom_kills(&mut self, cgroup: &MemoryCgroup) -> Option<u64> {
        use std::io::Read;
        self.text.clear();
        std::fs::File::open(cgroup.dir.join(cgroup.file))
            .and_then(|mut f| f.read_to_string(&mut self.text))
            .ok()?;
        parse_oom_kill(&self.text)
    }
}

/// The places, relative to the memory hierarchy, where Docker puts container `id`'s cgroup:
/// with the cgroupfs driver `<parent>/<id>` (parent `docker` by default), with the systemd
/// driver `<slice path>/docker-<id>.scope` (slice `system.slice` by default).
pub fn candidates(id: &str, cgroup_parent: &str) -> Vec<PathBuf> {
    let parent = cgroup_parent.trim_matches('/');
    let scope = format!("docker-{id}.scope");
    if parent.is_empty() {
        return vec![
            Path::new("docker").join(id),
            Path::new("system.slice").join(&scope),
        ];
    }
    let mut places = Vec::with_capacity(2);
    if let Some(slices) = systemd_slice_path(parent) {
        places.push(slices.join(&scope));
    }
    places.push(Path::new(parent).join(id));
    places
}

/// systemd's directory for a slice: each dash adds a level (`a-b.slice` is
/// `a.slice/a-b.slice`); `None` for a name that is not a slice.
fn systemd_slice_path(slice: &str) -> Option<PathBuf> {
    let stem = slice.strip_suffix(".slice")?;
    if stem.is_empty() || stem.contains('/') {
        return None;
    }
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Some(path)
}

/// The `oom_kill` line of `memory.oom_control` (v1) or `memory.events` (v2).
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// `container_oom_events_total` of one container across its runs. Docker keeps a restarted
/// container and its id, but the kernel's count lives in the cgroup of one run and starts at 0
/// in the next; kills of earlier runs are carried over, so the counter only goes up while the
/// container exists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OomCount {
    /// Kills in the container's earlier runs.
    earlier: u64,
    /// Kills in the current run when it was last read; `None` before its first read.
    current: Option<u64>,
    /// Whether any count was ever read: until then the value is unknown, not 0.
    known: bool,
}

impl OomCount {
    /// The current run's count, as read from its cgroup.
    pub fn observe(&mut self, kills: u64) {
        // Kernel counts never go down; a lower one is a new run nobody told us about.
        if let Some(before) = self.current.filter(|&before| kills < before) {
            self.earlier += before;
        }
        self.current = Some(kills);
        self.known = true;
    }

    /// The container started a new run; `missed` kills happened after the last read of the
    /// old run (the one that ended it, typically).
    pub fn restarted(&mut self, missed: u64) {
        self.earlier += self.current.take().unwrap_or(0) + missed;
    }

    /// Whether any count was read yet.
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// The counter's value; `None` while no count was ever read.
    pub fn value(&self) -> Option<u64> {
        self.known.then(|| self.earlier + self.current.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4a147d32e2d5";

    #[test]
    fn places_for_both_drivers_and_custom_parents() {
        assert_eq!(
            candidates(ID, ""),
            [
                PathBuf::from("docker/4a147d32e2d5"),
                PathBuf::from("system.slice/docker-4a147d32e2d5.scope"),
            ]
        );
        assert_eq!(
            candidates(ID, "/batch-jobs"),
            [PathBuf::from("batch-jobs/4a147d32e2d5")]
        );
        assert_eq!(
            candidates(ID, "ml-gpu.slice"),
            [
                PathBuf::from("ml.slice/ml-gpu.slice/docker-4a147d32e2d5.scope"),
                PathBuf::from("ml-gpu.slice/4a147d32e2d5"),
            ]
        );
        assert_eq!(systemd_slice_path(".slice"), None);
        assert_eq!(systemd_slice_path("a/b.slice"), None);
    }

    #[test]
    fn oom_kill_from_v1_oom_control_and_v2_events() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(2));
        // Linux before 4.13 has no count on cgroup v1: unknown, not 0.
        assert_eq!(parse_oom_kill("oom_kill_disable 0\nunder_oom 0\n"), None);
    }

    fn tree(version: u8, relative: &str, content: &str) -> (tempfile::TempDir, CgroupFs) {
        let root = tempfile::tempdir().unwrap();
        let (base, file) = if version == 2 {
            std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
            (root.path().to_path_buf(), "memory.events")
        } else {
            (root.path().join("memory"), "memory.oom_control")
        };
        let dir = base.join(relative);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), content).unwrap();
        let fs = CgroupFs::new(root.path().to_path_buf());
        (root, fs)
    }

    #[test]
    fn finds_and_reads_a_v1_cgroupfs_container() {
        let (_root, mut fs) = tree(1, &format!("docker/{ID}"), "under_oom 0\noom_kill 1\n");
        let cgroup = fs.locate(ID, "").expect("found under memory/docker");
        assert!(cgroup.dir.ends_with(format!("memory/docker/{ID}")));
        assert_eq!(fs.oom_kills(&cgroup), Some(1));
        assert!(fs.identity(&cgroup).is_some());
        assert_eq!(fs.locate("other", ""), None);
    }

    #[test]
    fn finds_and_reads_a_v2_systemd_container() {
        let scope = format!("system.slice/docker-{ID}.scope");
        let (_root, mut fs) = tree(2, &scope, "oom 4\noom_kill 4\n");
        let cgroup = fs.locate(ID, "").expect("found under system.slice");
        assert_eq!(fs.oom_kills(&cgroup), Some(4));
        std::fs::remove_dir_all(&cgroup.dir).unwrap();
        assert_eq!(fs.oom_kills(&cgroup), None, "gone between two runs");
        assert_eq!(fs.identity(&cgroup), None);
    }

    #[test]
    fn count_carries_kills_of_earlier_runs() {
        let mut count = OomCount::default();
        assert_eq!(count.value(), None, "unknown until read");
        count.observe(0);
        assert_eq!(count.value(), Some(0));
        count.observe(2);
        // The run ends with a kill the agent never read; the next run starts at 0.
        count.restarted(1);
        assert_eq!(count.value(), Some(3));
        count.observe(0);
        assert_eq!(count.value(), Some(3));
        count.observe(1);
        assert_eq!(count.value(), Some(4));
        // A new run the agent did not notice: the count went down, the kills are kept.
        count.observe(0);
        assert_eq!(count.value(), Some(4));
    }
}
