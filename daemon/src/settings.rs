//! One way to load configuration for both binaries: a setting given on the command line or in
//! its environment variable wins over the same key in the optional TOML file, which wins over
//! the built-in default. Every error names the setting the way the operator gave it (`--interval
//! / FLEETGATE_INTERVAL`, or `agent.toml: interval`).
//!
//! Secrets follow one rule: the value itself only in its environment variable (or flag), or in a
//! file named by the `<key>_file` setting; a TOML file names secret files but never holds a secret,
//! so configuration files can be world-readable and checked in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

/// Shortest secret accepted from the operator: anything shorter is guessable.
pub const MIN_SECRET_LEN: usize = 16;

/// A configuration problem, naming the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    /// The setting's key as in the TOML file (`max_body_bytes`), or `config` for the file itself.
    pub key: String,
    /// How the operator gave it: `--flag / ENV_VAR`, or `FILE: key`.
    pub setting: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The names of one setting: its TOML key, flag and environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// TOML key (snake_case).
    pub name: &'static str,
    /// Command-line flag, with its dashes.
    pub flag: &'static str,
    /// Environment variable.
    pub env: &'static str,
}

impl Key {
    /// A setting whose flag is `--` plus the key with dashes and whose environment variable is
    /// `env` (e.g. `Key::new("max_body_bytes", "--max-body-bytes", "FLEETGATE_MAX_BODY_BYTES")`).
    pub const fn new(name: &'static str, flag: &'static str, env: &'static str) -> Self {
        Key { name, flag, env }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The command line or the environment (clap does not say which).
    CommandLine,
    /// The TOML file at this path.
    File(PathBuf),
    /// The built-in default.
    Default,
}

/// A value and the setting it was given as, so a later check can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given<T> {
    /// The value.
    pub value: T,
    /// Its setting.
    pub key: Key,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Given<T> {
    /// An error about this value.
    pub fn invalid(&self, problem: impl Into<String>) -> ConfigError {
        error(self.key, &self.origin, problem)
    }

    /// The value converted by `f`, whose error message becomes a [`ConfigError`] naming this
    /// setting.
    pub fn parse<U, E: fmt::Display>(
        self,
        f: impl FnOnce(&T) -> Result<U, E>,
    ) -> Result<U, ConfigError> {
        f(&self.value).map_err(|e| self.invalid(e.to_string()))
    }
}

impl Given<String> {
    /// The value read as a duration such as `15s`, `1m30s` or `500ms`.
    pub fn duration(&self) -> Result<Duration, ConfigError> {
        let text = &self.value;
        humantime::parse_duration(text.trim()).map_err(|e| {
            self.invalid(format!(
                "invalid duration {text:?} ({e}; write e.g. 15s or 1m)"
            ))
        })
    }
}

/// The error for `key` given at `origin`.
pub fn error(key: Key, origin: &Origin, problem: impl Into<String>) -> ConfigError {
    let setting = match origin {
        Origin::CommandLine => format!("{} / {}", key.flag, key.env),
        Origin::File(path) => format!("{}: {}", path.display(), key.name),
        Origin::Default => format!("{} (default)", key.name),
    };
    ConfigError {
        key: key.name.to_string(),
        setting,
        problem: problem.into(),
    }
}

/// The configuration file (if any) under the command line.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// The `--config` file, when one was given.
    file: Option<PathBuf>,
}

impl Layers {
    /// Reads the TOML file at `path` (when given) into `F`, whose fields are the file's keys
    /// (use `#[serde(deny_unknown_fields)]`: an unknown key is an error naming it and its line).
    /// A key in `secrets` is refused with the rule for secrets: they go into `<key>_file`.
    pub fn read<F: DeserializeOwned + Default>(
        path: Option<&Path>,
        secrets: &[&str],
    ) -> Result<(Layers, F), ConfigError> {
        let Some(path) = path else {
            return Ok((Layers::default(), F::default()));
        };
        let file_error = |problem: String| ConfigError {
            key: "config".into(),
            setting: format!("--config / FLEETGATE_CONFIG ({})", path.display()),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| file_error(format!("cannot read it: {e}")))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| file_error(format!("{}{}", location(&text, e.span()), e.message())))?;
        if let Some(key) = secrets.iter().find(|k| table.contains_key(**k)) {
            return Err(ConfigError {
                key: (*key).to_string(),
                setting: format!("{}: {key}", path.display()),
                problem: format!(
                    "a configuration file may not hold a secret: put it in a file of its own \
                     (mode 0600) and set {key}_file to that file's path"
                ),
            });
        }
        let parsed: F = toml::from_str(&text)
            .map_err(|e| file_error(format!("{}{}", location(&text, e.span()), e.message())))?;
        Ok((
            Layers {
                file: Some(path.to_path_buf()),
            },
            parsed,
        ))
    }

    /// The command-line value if given, else the file's, with where it came from.
    pub fn pick<T>(&self, key: Key, flag: Option<T>, file: Option<T>) -> Option<Given<T>> {
        match (flag, file) {
            (Some(value), _) => Some(Given {
                value,
                key,
                origin: Origin::CommandLine,
            }),
            (None, Some(value)) => Some(Given {
                value,
                key,
                origin: self.file.clone().map_or(Origin::CommandLine, Origin::File),
            }),
            (None, None) => None,
        }
    }

    /// Like [`Layers::pick`], with `default` when neither layer sets the key.
    pub fn pick_or<T>(&self, key: Key, flag: Option<T>, file: Option<T>, default: T) -> Given<T> {
        self.pick(key, flag, file).unwrap_or(Given {
            value: default,
            key,
            origin: Origin::Default,
        })
    }

    /// A duration such as `15s`, `1m30s` or `500ms`, with `default` when not set.
    pub fn duration(
        &self,
        key: Key,
        flag: Option<String>,
        file: Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.pick(key, flag, file) {
            Some(given) => given.duration(),
            None => Ok(default),
        }
    }

    /// A secret under the one rule: its value from the command line or environment (`value`),
    /// else read from the file named by `file_key` (command line, environment or TOML file).
    /// `None` when neither is given.
    pub fn secret(
        &self,
        value_key: Key,
        value: Option<String>,
        file_key: Key,
        file_flag: Option<PathBuf>,
        file_in_toml: Option<PathBuf>,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            let given = Given {
                value,
                key: value_key,
                origin: Origin::CommandLine,
            };
            return check_secret(given.value.trim(), &given).map(Some);
        }
        let Some(path) = self.pick(file_key, file_flag, file_in_toml) else {
            return Ok(None);
        };
        read_secret(&path).map(Some)
    }
}

/// Reads a secret file: trimmed, non-empty, at least [`MIN_SECRET_LEN`] characters. A file that
/// others may read is accepted with a warning naming it.
pub fn read_secret(path: &Given<PathBuf>) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let file = &path.value;
    let text = std::fs::read_to_string(file)
        .map_err(|e| path.invalid(format!("cannot read {}: {e}", file.display())))?;
    if let Ok(meta) = std::fs::metadata(file) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(file = %file.display(), setting = path.key.name,
                "secret file is readable by every user; chmod 600 it");
        }
    }
    check_secret(text.trim(), path)
        .map_err(|e| path.invalid(format!("{}: {}", file.display(), e.problem)))
}

fn check_secret<T>(secret: &str, given: &Given<T>) -> Result<Secret, ConfigError> {
    if secret.is_empty() {
        return Err(given.invalid("is empty"));
    }
    if secret.chars().count() < MIN_SECRET_LEN {
        return Err(given.invalid(format!("must be at least {MIN_SECRET_LEN} characters")));
    }
    Ok(Secret::new(secret))
}

/// `line N, column M: ` for a TOML error span.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(at) = span.map(|s| s.start.min(text.len())) else {
        return String::new();
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: ")
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Key = Key::new("interval", "--interval", "T_INTERVAL");
    const TOKEN: Key = Key::new("token", "--token", "T_TOKEN");
    const TOKEN_FILE: Key = Key::new("token_file", "--token-file", "T_TOKEN_FILE");

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        interval: Option<String>,
        token_file: Option<PathBuf>,
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn command_line_over_file_over_default_and_errors_name_the_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.toml", "interval = \"2s\"\n");
        let (layers, file) = Layers::read::<File>(Some(&path), &[]).unwrap();
        assert_eq!(file.token_file, None);
        let d = |flag: Option<&str>, file: Option<&str>| {
            layers.duration(
                INTERVAL,
                flag.map(String::from),
                file.map(String::from),
                Duration::from_secs(15),
            )
        };
        assert_eq!(
            d(Some("1s"), file.interval.as_deref()),
            Ok(Duration::from_secs(1))
        );
        assert_eq!(
            d(None, file.interval.as_deref()),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(d(None, None), Ok(Duration::from_secs(15)));
        let e = d(Some("soon"), None).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.setting.as_str()),
            ("interval", "--interval / T_INTERVAL")
        );
        assert!(e.problem.starts_with("invalid duration \"soon\""), "{e}");
        let e = d(None, Some("soon")).unwrap_err();
        assert_eq!(e.setting, format!("{}: interval", path.display()));
    }

    #[test]
    fn unknown_keys_and_secrets_in_the_file_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "a.toml", "\n\nintervall = \"2s\"\n");
        let e = Layers::read::<File>(Some(&path), &[]).unwrap_err();
        assert_eq!(e.key, "config");
        assert!(
            e.problem.contains("line 3") && e.problem.contains("intervall"),
            "{e}"
        );
        let path = write(dir.path(), "b.toml", "token = \"0123456789abcdef\"\n");
        let e = Layers::read::<File>(Some(&path), &["token"]).unwrap_err();
        assert_eq!(e.key, "token");
        assert!(e.problem.contains("token_file"), "{e}");
        let e = Layers::read::<File>(Some(&dir.path().join("missing.toml")), &[]).unwrap_err();
        assert!(e.problem.contains("cannot read"), "{e}");
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "t", "  0123456789abcdef\n");
        let short = write(dir.path(), "s", "short\n");
        let layers = Layers::default();
        let s = layers
            .secret(TOKEN, None, TOKEN_FILE, Some(good.clone()), None)
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "0123456789abcdef");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let s = layers
            .secret(
                TOKEN,
                Some("fedcba9876543210".into()),
                TOKEN_FILE,
                Some(good),
                None,
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            s.expose(),
            "fedcba9876543210",
            "the value wins over the file"
        );
        let e = layers
            .secret(TOKEN, None, TOKEN_FILE, None, Some(short))
            .unwrap_err();
        assert_eq!(e.key, "token_file");
        assert!(e.problem.contains("at least 16"), "{e}");
        let e = layers
            .secret(TOKEN, Some("x".into()), TOKEN_FILE, None, None)
            .unwrap_err();
        assert_eq!(e.setting, "--token / T_TOKEN");
        let e = layers
            .secret(TOKEN, None, TOKEN_FILE, Some(dir.path().join("nope")), None)
            .unwrap_err();
        assert!(e.problem.contains("cannot read"), "{e}");
        assert_eq!(layers.secret(TOKEN, None, TOKEN_FILE, None, None), Ok(None));
    }
}
