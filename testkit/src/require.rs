//! Real components a test needs. Strict by default: a missing one fails the test, so a green
//! run means every test ran. `FLEETGATE_ALLOW_SKIP=1` lets a machine without them skip those
//! tests, each saying so on stderr (`CI=true` keeps it strict regardless).

use std::path::{Path, PathBuf};

/// Whether tests may skip when a real component is missing: `FLEETGATE_ALLOW_SKIP=1`, and not
/// under `CI=true`.
pub fn skipping_allowed() -> bool {
    std::env::var("FLEETGATE_ALLOW_SKIP").is_ok_and(|v| v == "1")
        && !std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `Some(value)` when `probe` found the component `what`; otherwise panics naming it and why, or,
/// when skipping is allowed, prints `SKIPPED` with the reason and returns `None`.
///
/// ```no_run
/// # fn docker_answers() -> Result<(), String> { Ok(()) }
/// let Some(()) = fleetgate_testkit::require("a running Docker engine", docker_answers()) else {
///     return;
/// };
/// ```
pub fn require<T>(what: &str, probe: Result<T, String>) -> Option<T> {
    decide(skipping_allowed(), what, probe)
}

fn decide<T>(skip: bool, what: &str, probe: Result<T, String>) -> Option<T> {
    match probe {
        Ok(value) => Some(value),
        Err(why) if skip => {
            eprintln!("SKIPPED: {what} is not available ({why}); FLEETGATE_ALLOW_SKIP=1");
            None
        }
        Err(why) => panic!(
            "{what} is required but not available: {why}. Install it (scripts/test.sh installs \
             every component), or set FLEETGATE_ALLOW_SKIP=1 to skip the tests that need it"
        ),
    }
}

/// The path of the executable `name` (an absolute path, or a name looked up in `PATH`), under
/// the rules of [`require`].
pub fn require_tool(name: &str) -> Option<PathBuf> {
    require(name, find_executable(name))
}

fn find_executable(name: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        let path = Path::new(name);
        return if is_executable(path) {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{name} is not an executable file"))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| format!("{name} is not in PATH"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_component_is_skipped_only_when_allowed() {
        assert_eq!(decide(false, "x", Ok(3)), Some(3));
        assert_eq!(decide::<()>(true, "x", Err("gone".into())), None);
        let failed =
            std::panic::catch_unwind(|| decide::<()>(false, "promtool", Err("gone".into())))
                .expect_err("strict by default");
        let msg = failed.downcast_ref::<String>().expect("panic message");
        assert!(
            msg.contains("promtool is required") && msg.contains("gone"),
            "{msg}"
        );
    }

    #[test]
    fn tools_are_found_in_path_or_by_absolute_path() {
        let sh = find_executable("sh").expect("sh in PATH");
        assert!(sh.is_absolute());
        assert_eq!(find_executable(sh.to_str().expect("utf-8")), Ok(sh));
        let err = find_executable("no-such-tool-fleetgate").expect_err("missing");
        assert!(err.contains("not in PATH"), "{err}");
        let err = find_executable("/nonexistent/tool").expect_err("missing");
        assert!(err.contains("not an executable file"), "{err}");
    }
}
