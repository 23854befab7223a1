//! Containers on the real Docker engine: a busybox image made here with `docker import` (no
//! registry needed) and containers from it, all removed on drop.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The Docker socket the engine is expected on.
pub const SOCKET: &str = "/var/run/docker.sock";

/// Applets linked into the image's `/bin`.
const APPLETS: [&str; 5] = ["sh", "sleep", "yes", "cat", "dd"];

/// The engine's version when it answers on [`SOCKET`]; why not otherwise. For
/// [`require`](crate::require): `require("a running Docker engine", docker::engine())`.
pub fn engine() -> Result<String, String> {
    if !std::path::Path::new(SOCKET).exists() {
        return Err(format!("no {SOCKET}"));
    }
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Runs `docker ARGS`; panics with its stderr when it fails; returns its stdout, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect -f <template> <name>`.
pub fn inspect(name: &str, template: &str) -> String {
    docker(&["inspect", "-f", template, name])
}

/// An image holding only the static `/bin/busybox` (Debian package busybox-static) and the
/// applets `sh`, `sleep`, `yes`, `cat`, `dd`; removed on drop.
#[derive(Debug)]
pub struct BusyboxImage {
    /// `fleetgate-test-busybox:<pid>-<purpose>`, unique per test process and purpose.
    pub reference: String,
}

impl BusyboxImage {
    /// Imports the image; `purpose` keeps images of concurrent tests apart.
    pub fn build(purpose: &str) -> BusyboxImage {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("static /bin/busybox (Debian package busybox-static) is required");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink");
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(root.path())
            .args(["-c", "."])
            .output()
            .expect("tar");
        assert!(tar.status.success(), "tar failed");

        let reference = format!("fleetgate-test-busybox:{}-{purpose}", std::process::id());
        let mut import = Command::new("docker")
            .args(["import", "-", &reference])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker import");
        import
            .stdin
            .take()
            .expect("stdin")
            .write_all(&tar.stdout)
            .expect("write tarball");
        assert!(
            import.wait().expect("wait").success(),
            "docker import failed"
        );
        BusyboxImage { reference }
    }
}

impl Drop for BusyboxImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.reference])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A detached container, force-removed on drop.
#[derive(Debug)]
pub struct Container {
    /// Unique name: `fleetgate-test-<pid>-<role>-<n>`.
    pub name: String,
    /// Full id as printed by `docker run -d`.
    pub id: String,
}

impl Container {
    /// `docker run -d --name ... OPTIONS IMAGE sh -c SCRIPT`.
    pub fn run(image: &BusyboxImage, role: &str, options: &[&str], script: &str) -> Container {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("fleetgate-test-{}-{role}-{n}", std::process::id());
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(options);
        args.extend_from_slice(&[&image.reference, "sh", "-c", script]);
        let id = docker(&args);
        Container { name, id }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
