//! Where the binaries under test are, and a refusal to run one older than its sources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

/// A Fleetgate binary a test can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// `fleetgate-hub` (package `fleetgate-hub`).
    Hub,
    /// `fleetgate-agent` (package `fleetgate-agent`).
    Agent,
    /// `fleetgate-loadtest` (package `fleetgate-loadtest`).
    Loadtest,
}

impl Binary {
    /// The executable's (and its package's) name.
    pub fn name(self) -> &'static str {
        match self {
            Binary::Hub => "fleetgate-hub",
            Binary::Agent => "fleetgate-agent",
            Binary::Loadtest => "fleetgate-loadtest",
        }
    }

    /// The environment variable that names the executable to use instead.
    pub fn env_override(self) -> &'static str {
        match self {
            Binary::Hub => "FLEETGATE_HUB_BIN",
            Binary::Agent => "FLEETGATE_AGENT_BIN",
            Binary::Loadtest => "FLEETGATE_LOADTEST_BIN",
        }
    }
}

/// The executable of `which`, in this order:
/// 1. the path in its override variable (`FLEETGATE_HUB_BIN`, ...), used as given;
/// 2. `CARGO_BIN_EXE_<name>`, which cargo sets for the tests of the binary's own package;
/// 3. `<target>/<profile>/<name>` of the build that produced the running test or example
///    (`cargo test --workspace` builds every binary; `cargo test -p X` only X's own).
///
/// Panics with a message saying how to build it when it is missing, or when one of the source
/// files cargo recorded for it (its `.d` file) is newer than it: a stale binary would test old
/// code.
pub fn binary(which: Binary) -> PathBuf {
    let name = which.name();
    if let Some(path) = std::env::var_os(which.env_override()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{}={} does not name a file",
            which.env_override(),
            path.display()
        );
        return path;
    }
    let path = std::env::var_os(format!("CARGO_BIN_EXE_{name}"))
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join(name));
    assert!(
        path.is_file(),
        "{} not found: build it with `cargo build -p {name}` (same profile as this test), or \
         name one with {}",
        path.display(),
        which.env_override()
    );
    if let Some(newer) = newer_source(&path) {
        panic!(
            "{} is older than its source {}: rebuild it with `cargo build -p {name}` (same \
             profile as this test), or name one with {}",
            path.display(),
            newer.display(),
            which.env_override()
        );
    }
    path
}

/// A command running `which` ([`binary`]) with every `FLEETGATE_*` variable of the test's
/// environment removed, so only what the test sets configures it, and `RUST_LOG=info` (or the
/// value of `FLEETGATE_TEST_LOG`). For runs to completion (`--once`, subcommands) whose output
/// the test reads.
pub fn command(which: Binary) -> Command {
    let mut cmd = Command::new(binary(which));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("FLEETGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env(
        "RUST_LOG",
        std::env::var("FLEETGATE_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    cmd
}

/// `<target>/<profile>`: test executables live in `<target>/<profile>/deps`, examples in
/// `<target>/<profile>/examples`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the running executable");
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the running executable is not inside <target>/<profile>/<dir>")
}

/// The first source file listed in `<binary>.d` (cargo's dep-info) that is newer than the binary;
/// `None` when none is, or when there is no dep-info (a binary from elsewhere).
fn newer_source(binary: &Path) -> Option<PathBuf> {
    let built = modified(binary)?;
    let info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    let (_, deps) = info.lines().next()?.split_once(": ")?;
    split_escaped(deps)
        .into_iter()
        .map(PathBuf::from)
        .find(|source| modified(source).is_some_and(|m| m > built))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Splits a dep-info line on spaces that are not escaped with a backslash.
fn split_escaped(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_paths_keep_escaped_spaces() {
        assert_eq!(
            split_escaped("/a/b.rs /c\\ d/e.rs  /f.rs"),
            ["/a/b.rs", "/c d/e.rs", "/f.rs"]
        );
    }

    #[test]
    fn a_source_newer_than_the_binary_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("tool");
        let old = dir.path().join("old.rs");
        let new = dir.path().join("new.rs");
        std::fs::write(&old, "").expect("write");
        std::fs::write(&bin, "").expect("write");
        std::fs::write(
            dir.path().join("tool.d"),
            format!("{}: {} {}\n", bin.display(), old.display(), new.display()),
        )
        .expect("write");
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        for path in [&old, &bin] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(past))
                .expect("set mtime");
        }
        assert_eq!(newer_source(&bin), None, "new.rs does not exist yet");
        std::fs::write(&new, "").expect("write");
        assert_eq!(newer_source(&bin), Some(new));
    }
}
