//! Real-Docker fixtures for the container tests: a busybox image built with `docker import`
//! and containers with unique names, all removed on drop.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the Docker engine answers. Without one the test fails under `CI=true` and is
/// skipped loudly otherwise.
pub fn docker_available() -> bool {
    let ok = std::path::Path::new("/var/run/docker.sock").exists()
        && Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Docker engine not reachable at /var/run/docker.sock, required under CI=true");
        }
        eprintln!("SKIPPED: Docker engine not reachable at /var/run/docker.sock");
    }
    ok
}

fn docker(args: &[&str]) -> String {
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

/// A busybox image imported from a tarball holding `/bin/busybox` and its applet links.
#[derive(Debug)]
pub struct Image {
    /// `fleetgate-test-busybox:<pid>-<purpose>`, unique per test run.
    pub reference: String,
}

impl Image {
    pub fn build(purpose: &str) -> Image {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir bin");
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .expect("static /bin/busybox (Debian busybox-static) is required");
        for applet in ["sh", "sleep", "yes", "dd"] {
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
        Image { reference }
    }
}

impl Drop for Image {
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
    pub fn run(image: &Image, role: &str, options: &[&str], script: &str) -> Container {
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
