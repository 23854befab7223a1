//! `filesystem`: size, free space and inodes of every mounted file system listed in the host's
//! `/proc/1/mountinfo`, minus node_exporter's default pseudo file systems and mount points.
//! With a rootfs other than `/` the file system is measured under it and reported by its host
//! path, as node_exporter does with `--path.rootfs`.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::{read_to, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
const EXCLUDED_FS_TYPES: [&str; 24] = [
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// How long one statfs may take before its mount is reported as failing (node_exporter's
/// `--collector.filesystem.mount-timeout` default): a dead NFS server must not stall the cycle.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(5);

/// File systems backed by local memory or block devices, whose statfs cannot hang on a
/// network; every other type (nfs, cifs, fuse.*, ceph, ...) is measured on a helper thread.
const LOCAL_FS_TYPES: [&str; 12] = [
    "ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "vfat", "exfat", "f2fs", "zfs",
    "ntfs3",
];

/// One mount of interest, its labels as node_exporter reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The mount source (`/dev/vda1`, `tmpfs`).
    device: String,
    /// The mount point on the host.
    mount_point: String,
    /// The file system type.
    fs_type: String,
    /// Whether the per-mount options include `ro`.
    read_only: bool,
}

/// The filesystem collector.
#[derive(Debug, Default)]
pub(super) struct Filesystem {
    /// Reused read buffer for mountinfo.
    text: String,
    /// Reused list of this cycle's mounts.
    mounts: Vec<Mount>,
    /// Paths whose statfs has not returned yet; they report `device_error 1` without another
    /// attempt until the hanging call comes back.
    pending: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Subcollector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        // PID 1's view is the host's; /proc/self stands in where hidepid hides PID 1.
        if let Err(e) = read_to(&paths.proc("1/mountinfo"), &mut self.text) {
            if e.kind() != io::ErrorKind::NotFound && e.kind() != io::ErrorKind::PermissionDenied {
                return Err(e.into());
            }
            read_to(&paths.proc("self/mountinfo"), &mut self.text)?;
        }
        self.mounts.clear();
        for line in self.text.lines() {
            let Some(mut mount) = parse_mountinfo_line(line) else {
                continue;
            };
            mount.mount_point = strip_rootfs(&paths.rootfs, mount.mount_point);
            if is_excluded_mount_point(&mount.mount_point)
                || EXCLUDED_FS_TYPES.contains(&mount.fs_type.as_str())
            {
                continue;
            }
            // The same file system mounted twice at one place is reported once.
            if self.mounts.iter().any(|m| {
                m.device == mount.device
                    && m.mount_point == mount.mount_point
                    && m.fs_type == mount.fs_type
            }) {
                continue;
            }
            self.mounts.push(mount);
        }
        for mount in &self.mounts {
            let labels = [
                ("device", mount.device.as_str()),
                ("fstype", mount.fs_type.as_str()),
                ("mountpoint", mount.mount_point.as_str()),
            ];
            let path = paths.rootfs(&mount.mount_point);
            let stats = if LOCAL_FS_TYPES.contains(&mount.fs_type.as_str()) {
                statfs(&path)
            } else {
                self.bounded_statfs(path)
            };
            out.gauge(
                "node_filesystem_device_error",
                "Whether an error occurred while getting statistics for the given device.",
                &labels,
                if stats.is_ok() { 0.0 } else { 1.0 },
            );
            let Ok(s) = stats else {
                continue;
            };
            let size = [
                (
                    "node_filesystem_size_bytes",
                    "Filesystem size in bytes.",
                    s.blocks * s.block_size,
                ),
                (
                    "node_filesystem_free_bytes",
                    "Filesystem free space in bytes.",
                    s.free * s.block_size,
                ),
                (
                    "node_filesystem_avail_bytes",
                    "Filesystem space available to non-root users in bytes.",
                    s.avail * s.block_size,
                ),
                (
                    "node_filesystem_files",
                    "Filesystem total file nodes.",
                    s.files,
                ),
                (
                    "node_filesystem_files_free",
                    "Filesystem total free file nodes.",
                    s.files_free,
                ),
                (
                    "node_filesystem_readonly",
                    "Filesystem read-only status.",
                    if mount.read_only { 1.0 } else { 0.0 },
                ),
            ];
            for (family, help, value) in size {
                out.gauge(family, help, &labels, value);
            }
        }
        Ok(())
    }
}

impl Filesystem {
    /// statfs on a helper thread, given up after [`MOUNT_TIMEOUT`]; the thread is left to
    /// finish on its own and clears the path from `pending` when it does.
    fn bounded_statfs(&self, path: PathBuf) -> io::Result<Stats> {
        if !lock(&self.pending).insert(path.clone()) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "statfs still hanging",
            ));
        }
        let (tx, rx) = mpsc::channel();
        let pending = Arc::clone(&self.pending);
        let worker_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("statfs".into())
            .spawn(move || {
                let result = statfs(&worker_path);
                lock(&pending).remove(&worker_path);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            lock(&self.pending).remove(&path);
            return Err(e);
        }
        rx.recv_timeout(MOUNT_TIMEOUT).unwrap_or_else(|_| {
            tracing::warn!(mountpoint = %path.display(), "statfs timed out; mount marked as failing until it returns");
            Err(io::Error::new(io::ErrorKind::TimedOut, "statfs timed out"))
        })
    }
}

/// The set behind a mutex, also after a thread panicked while holding it (a set of paths
/// cannot be left inconsistent).
fn lock(set: &Mutex<HashSet<PathBuf>>) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parses one mountinfo line: `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`.
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 10 {
        return None;
    }
    // Optional fields between the options and the `-` separator vary in number.
    let dash = 6 + fields[6..].iter().position(|f| *f == "-")?;
    Some(Mount {
        device: unescape(fields.get(dash + 2)?),
        mount_point: unescape(fields[4]),
        fs_type: (*fields.get(dash + 1)?).to_string(),
        read_only: fields[5].split(',').any(|o| o == "ro"),
    })
}

/// Undoes the kernel's octal escapes in mountinfo (`\040` space, `\011` tab, `\134` backslash).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(o)) => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the rootfs prefix from a mount point seen from inside a container, like
/// node_exporter's `rootfsStripPrefix`.
fn strip_rootfs(rootfs: &Path, mount_point: String) -> String {
    let Some(root) = rootfs.to_str().map(|r| r.trim_end_matches('/')) else {
        return mount_point;
    };
    if root.is_empty() {
        return mount_point;
    }
    match mount_point.strip_prefix(root) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => mount_point,
    }
}

/// node_exporter's default `--collector.filesystem.mount-points-exclude`:
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
fn is_excluded_mount_point(mount_point: &str) -> bool {
    let Some(rest) = mount_point.strip_prefix('/') else {
        return false;
    };
    let whole = |p: &str| {
        rest.strip_prefix(p)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    };
    let below = |p: &str| rest.strip_prefix(p).is_some_and(|r| !r.is_empty());
    whole("dev")
        || whole("proc")
        || whole("sys")
        || below("run/credentials/")
        || below("var/lib/docker/")
        || below("var/lib/containers/storage/")
}

/// What statfs(2) says about one file system, as floats ready for export.
#[derive(Debug)]
struct Stats {
    /// Fundamental block size (`f_bsize`, which node_exporter multiplies by).
    block_size: f64,
    /// Total blocks.
    blocks: f64,
    /// Free blocks.
    free: f64,
    /// Blocks free to unprivileged users.
    avail: f64,
    /// Total inodes.
    files: f64,
    /// Free inodes.
    files_free: f64,
}

/// statfs(2) on `path`. node_exporter uses statfs and `f_bsize`, not statvfs and `f_frsize`;
/// the same call keeps the sizes byte-identical to it.
#[allow(unsafe_code)]
fn statfs(path: &Path) -> io::Result<Stats> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount point"))?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call and `buf` is a valid,
    // exclusively borrowed `statfs` the kernel fills in.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // field widths differ between architectures
    Ok(Stats {
        block_size: buf.f_bsize as f64,
        blocks: buf.f_blocks as f64,
        free: buf.f_bfree as f64,
        avail: buf.f_bavail as f64,
        files: buf.f_files as f64,
        files_free: buf.f_ffree as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
28 27 0:25 / /mnt/my\\040disk ro,nosuid shared:3 master:1 - tmpfs none ro,size=4k
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
42 27 254:0 /var/lib/docker /var/lib/docker rw,relatime shared:1 - ext4 /dev/vda rw
43 27 0:50 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
44 27 0:51 / /run tmpfs rw - tmpfs tmpfs rw
45 27 0:52 / /run/credentials/x.service ro - tmpfs tmpfs ro
";

    #[test]
    fn parses_and_filters_mountinfo_like_node_exporter() {
        let kept: Vec<Mount> = MOUNTINFO
            .lines()
            .filter_map(parse_mountinfo_line)
            .filter(|m| {
                !is_excluded_mount_point(&m.mount_point)
                    && !EXCLUDED_FS_TYPES.contains(&m.fs_type.as_str())
            })
            .collect();
        let points: Vec<&str> = kept.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/mnt/my disk", "/var/lib/docker", "/run"]);
        assert_eq!(kept[0].device, "/dev/vda");
        assert_eq!(kept[1].fs_type, "tmpfs");
        assert!(kept[1].read_only);
        assert!(!kept[0].read_only);
    }

    #[test]
    fn measures_under_rootfs_and_reports_host_paths() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let rootfs = dir.path().join("host");
        std::fs::create_dir_all(proc.join("1")).unwrap();
        std::fs::create_dir_all(rootfs.join("data")).unwrap();
        std::fs::write(
            proc.join("1/mountinfo"),
            "27 1 254:0 / / rw - ext4 /dev/vda rw\n\
             28 27 254:1 / /data rw - xfs /dev/vdb rw\n\
             29 27 254:2 / /gone rw - ext4 /dev/vdc rw\n",
        )
        .unwrap();
        let paths = HostPaths {
            proc,
            sys: dir.path().join("sys"),
            rootfs,
        };
        let mut out = MetricBuffer::new();
        Filesystem::default().collect(&paths, &mut out).unwrap();
        let text = fleetgate_shared::text::render(out.families());
        for line in [
            "node_filesystem_device_error{device=\"/dev/vda\",fstype=\"ext4\",mountpoint=\"/\"} 0\n",
            "node_filesystem_device_error{device=\"/dev/vdb\",fstype=\"xfs\",mountpoint=\"/data\"} 0\n",
            "node_filesystem_device_error{device=\"/dev/vdc\",fstype=\"ext4\",mountpoint=\"/gone\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("node_filesystem_size_bytes{device=\"/dev/vdc\""));
    }

    #[test]
    fn rootfs_prefix_is_stripped() {
        let root = Path::new("/host/root");
        assert_eq!(strip_rootfs(root, "/host/root".into()), "/");
        assert_eq!(strip_rootfs(root, "/host/root/boot".into()), "/boot");
        assert_eq!(strip_rootfs(root, "/boot".into()), "/boot");
        assert_eq!(strip_rootfs(root, "/host/rootfs".into()), "/host/rootfs");
        assert_eq!(strip_rootfs(Path::new("/"), "/boot".into()), "/boot");
    }

    #[test]
    fn a_hanging_mount_is_not_retried_while_pending() {
        let fs = Filesystem::default();
        assert!(fs.bounded_statfs(PathBuf::from("/")).is_ok());
        assert!(
            lock(&fs.pending).is_empty(),
            "finished calls leave nothing pending"
        );
        lock(&fs.pending).insert(PathBuf::from("/"));
        let err = fs.bounded_statfs(PathBuf::from("/")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn statfs_of_root_is_nonzero() {
        let s = statfs(Path::new("/")).unwrap();
        assert!(s.blocks * s.block_size > 0.0);
        assert!(statfs(Path::new("/definitely/not/here")).is_err());
    }
}
