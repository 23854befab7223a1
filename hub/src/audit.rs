//! The audit trail: every enrollment, re-registration, removal, use of the admin token and
//! refused attempt at one, appended to `DATA_DIR/audit.log` as one JSON object per line and
//! fsynced before the request is answered. The file is rotated by size into `audit.log.1` …
//! `audit.log.<KEEP>`; [`AuditLog::read`] serves `GET /audit` from all of them.
//!
//! A record never holds a token: the actor is a kind (admin, enrollment, node, none), the node
//! a name, the source an IP address.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// File name of the current audit log inside the data directory.
pub const FILE_NAME: &str = "audit.log";
/// Size at which the current file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;
/// Rotated files kept besides the current one.
pub const KEEP: usize = 4;

/// Which credential a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The admin token.
    Admin,
    /// The enrollment token.
    Enrollment,
    /// A node's own push token.
    Node,
    /// No valid token.
    None,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339, UTC, milliseconds (fixed width, so text order is time order).
    pub time: String,
    /// `add_node`, `reenroll`, `remove_node`, `list_nodes`, `read_audit`, …
    pub action: String,
    /// The node the request was about, as the request named it.
    pub node: Option<String>,
    /// The credential used.
    pub actor: Actor,
    /// The client's IP address.
    pub source: String,
    /// `ok`, `refused` (no valid token), `forbidden`, `not_found`, `invalid`, `unavailable`
    /// (the data directory could not be written), `error`.
    pub result: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Record {
    /// A record stamped now.
    pub fn now(
        action: &str,
        node: Option<&str>,
        actor: Actor,
        source: std::net::IpAddr,
        result: &str,
    ) -> Self {
        Record {
            time: timestamp(SystemTime::now()),
            action: action.to_string(),
            node: node.map(str::to_string),
            actor,
            source: source.to_string(),
            result: result.to_string(),
            detail: None,
        }
    }

    /// The same record with a reason attached.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// `t` as written in [`Record::time`].
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The `since` of `GET /audit`: RFC 3339 (`2026-11-26T17:00:00Z`) or Unix seconds, as the
/// [`Record::time`] text it compares with.
pub fn parse_since(text: &str) -> Result<String, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("since={text:?} is not a time"));
        }
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.min(1e11));
        return Ok(timestamp(t));
    }
    humantime::parse_rfc3339_weak(text)
        .map(timestamp)
        .map_err(|e| {
            format!(
                "since={text:?} is neither RFC 3339 (2026-01-31T12:00:00Z) nor Unix seconds: {e}"
            )
        })
}

/// The audit log of one data directory.
#[derive(Debug)]
pub struct AuditLog {
    /// `DATA_DIR/audit.log`.
    path: PathBuf,
    /// Size at which it is rotated.
    max_bytes: u64,
    /// The open file and its length; serializes appends, rotation and reads.
    file: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    file: File,
    len: u64,
}

impl AuditLog {
    /// Opens (creating) `DATA_DIR/audit.log`, rotated at `max_bytes`.
    pub fn open(data_dir: &Path, max_bytes: u64) -> io::Result<AuditLog> {
        let path = data_dir.join(FILE_NAME);
        let mut file = open_append(&path)?;
        let mut len = file.metadata()?.len();
        if len > 0 && last_byte(&path)? != Some(b'\n') {
            // A record cut short by a crash: end its line so the next one stands alone.
            file.write_all(b"\n")?;
            file.sync_data()?;
            len += 1;
        }
        Ok(AuditLog {
            path,
            max_bytes: max_bytes.max(1),
            file: Mutex::new(Current { file, len }),
        })
    }

    /// Appends `record` and fsyncs it; on error the file is left as it was (no partial line).
    pub fn append(&self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut cur = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if cur.len > 0 && cur.len + line.len() as u64 > self.max_bytes {
            self.rotate(&mut cur)?;
        }
        let written = cur
            .file
            .write_all(&line)
            .and_then(|()| cur.file.sync_data());
        if let Err(e) = written {
            // A full disk may have taken half the line: cut it off so the next record starts
            // on a line of its own.
            let _ = cur.file.set_len(cur.len);
            return Err(e);
        }
        cur.len += line.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// audit.log.(KEEP-1) → .KEEP, …, audit.log → .1, then a new audit.log.
    fn rotate(&self, cur: &mut Current) -> io::Result<()> {
        for n in (1..KEEP).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        let file = open_append(&self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        *cur = Current { file, len: 0 };
        Ok(())
    }

    /// Records at or after `since` (oldest first, at most `limit`), or without `since` the
    /// newest `limit` records (oldest first). Lines that do not parse (a record cut short by a
    /// crash) are skipped.
    pub fn read(&self, since: Option<&str>, limit: usize) -> io::Result<Vec<Record>> {
        let _held = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // Oldest file first.
        let files: Vec<PathBuf> = (1..=KEEP)
            .rev()
            .map(|n| self.rotated(n))
            .chain([self.path.clone()])
            .collect();
        if let Some(since) = since {
            let mut out = Vec::new();
            for path in &files {
                for_each_record(path, |r| {
                    if r.time.as_str() >= since && out.len() < limit {
                        out.push(r);
                    }
                    out.len() < limit
                })?;
                if out.len() >= limit {
                    break;
                }
            }
            return Ok(out);
        }
        // Newest `limit`: read files newest first until enough.
        let mut newest_first: Vec<Vec<Record>> = Vec::new();
        let mut total = 0;
        for path in files.iter().rev() {
            let mut records = Vec::new();
            for_each_record(path, |r| {
                records.push(r);
                true
            })?;
            total += records.len();
            newest_first.push(records);
            if total >= limit {
                break;
            }
        }
        let mut out: VecDeque<Record> = newest_first.into_iter().rev().flatten().collect();
        while out.len() > limit {
            out.pop_front();
        }
        Ok(out.into())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn last_byte(path: &Path) -> io::Result<Option<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.seek(SeekFrom::End(0))? == 0 {
        return Ok(None);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(Some(b[0]))
}

/// Calls `f` with every record of `path` until it returns false; a missing file has none.
fn for_each_record(path: &Path, mut f: impl FnMut(Record) -> bool) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        let Ok(record) = serde_json::from_slice::<Record>(&line) else {
            continue;
        };
        if !f(record) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        let mut r = Record::now(
            "add_node",
            Some(&format!("n{i}")),
            Actor::Enrollment,
            [127, 0, 0, 1].into(),
            "ok",
        );
        r.time = timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i as u64));
        r
    }

    #[test]
    fn appends_rotates_by_size_and_reads_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = serde_json::to_vec(&record(10)).unwrap().len() as u64 + 1;
        // Three records per file.
        let log = AuditLog::open(dir.path(), line_len * 3).unwrap();
        for i in 10..40 {
            log.append(&record(i)).unwrap();
        }
        let names = |n: usize| dir.path().join(format!("audit.log.{n}"));
        assert!(names(KEEP).exists());
        assert!(!names(KEEP + 1).exists());
        // What is kept: the current file and KEEP rotated ones, 3 records each at most.
        let all = log.read(None, usize::MAX).unwrap();
        assert_eq!(all.len(), 3 * KEEP + 3);
        assert_eq!(all.last().unwrap().node.as_deref(), Some("n39"));
        let newest = log.read(None, 4).unwrap();
        let nodes: Vec<_> = newest.iter().filter_map(|r| r.node.clone()).collect();
        assert_eq!(nodes, ["n36", "n37", "n38", "n39"]);
        let since = parse_since("30").unwrap();
        let from = log.read(Some(&since), 2).unwrap();
        let nodes: Vec<_> = from.iter().filter_map(|r| r.node.clone()).collect();
        assert_eq!(nodes, ["n30", "n31"]);
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn a_torn_line_is_skipped_and_reopening_continues() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        log.append(&record(1)).unwrap();
        drop(log);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        f.write_all(b"{\"time\":\"1970-01-01T00:00:0").unwrap();
        let log = AuditLog::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        log.append(&record(2)).unwrap();
        let all = log.read(None, 10).unwrap();
        assert_eq!(all, [record(1), record(2)]);
    }

    #[test]
    fn since_accepts_rfc3339_and_unix_seconds_and_names_bad_input() {
        assert_eq!(
            parse_since("2026-01-31T12:00:00Z").unwrap(),
            "2026-01-31T12:00:00.000Z"
        );
        assert_eq!(parse_since("1.5").unwrap(), "1970-01-01T00:00:01.500Z");
        let e = parse_since("yesterday").unwrap_err();
        assert!(e.contains("yesterday") && e.contains("RFC 3339"), "{e}");
        assert!(parse_since("-1").is_err());
    }

    #[test]
    fn records_serialize_as_documented() {
        let r = record(0).with_detail("full");
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "1970-01-01T00:00:00.000Z", "action": "add_node",
                "node": "n0", "actor": "enrollment", "source": "127.0.0.1", "result": "ok",
                "detail": "full"})
        );
    }
}
