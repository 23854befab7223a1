//! node_exporter's textfile collector, with its semantics, so cron jobs that write `*.prom`
//! files for node_exporter keep working unchanged: every `*.prom` file of one directory is read
//! at each collection and merged into the snapshot; `node_textfile_mtime_seconds{file}` gives
//! the modification time of each file read, `node_textfile_scrape_error` is 1 when a file (or
//! the directory) could not be read or parsed. A bad file is skipped whole and the others
//! still go out.
//!
//! What node_exporter 1.5 does, and this collector with it (checked side by side with the real
//! one in `tests/textfile.rs`):
//! - only names ending in `.prom`, in name order; `file` is the path (directory joined with
//!   the name); the mtime is in whole seconds;
//! - a file whose samples carry timestamps is skipped whole, as is one that does not parse
//!   (a second `HELP` or `TYPE` line for a name, `TYPE` after samples, duplicate label names,
//!   no newline at the end, which is how a half-written file looks);
//! - a family without `HELP` gets `Metric read from <files>`, every file holding it, joined
//!   with `, `; within a file a family's series get every label name of the family, missing
//!   ones empty;
//! - the same family in several files is merged when HELP and TYPE agree; otherwise the first
//!   file's wins and the others' series are dropped, as is a repeated series.
//!
//! Where node_exporter 1.5 is not predictable, this collector is: a label name starting with
//! `__` (node_exporter panics) or a family in Fleetgate's own `fleetgate_` namespace makes the
//! file bad; a family that another collector (or this one, or the agent itself) already
//! produces is dropped, logged, and the collected one kept (node_exporter serves whichever it
//! happened to gather first). Files over [`MAX_FILE_BYTES`] are bad, and at most
//! [`MAX_FILES`] files are read.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use fleetgate_shared::{Family, Label};

use super::{CollectError, CollectFuture, Collector, MetricBuffer};

/// Largest file read; a bigger one is an error, not an allocation.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Most `*.prom` files read per collection; the rest are an error.
pub const MAX_FILES: usize = 1000;

/// HELP of `node_textfile_mtime_seconds`, as node_exporter writes it.
const MTIME_HELP: &str = "Unixtime mtime of textfiles successfully read.";
/// HELP of `node_textfile_scrape_error`, as node_exporter writes it.
const ERROR_HELP: &str = "1 if there was an error opening or reading a file, 0 otherwise";
/// This collector's own families; a file may not define them.
const OWN_FAMILIES: [&str; 2] = ["node_textfile_mtime_seconds", "node_textfile_scrape_error"];

/// Reads the `*.prom` files of one directory.
#[derive(Debug)]
pub struct TextfileCollector {
    /// The directory.
    dir: PathBuf,
    /// Problems logged in the previous collection, so each is logged once while it lasts.
    logged: BTreeSet<String>,
}

impl TextfileCollector {
    /// A collector for `dir`; it need not exist yet (a missing directory is reported through
    /// `node_textfile_scrape_error`, as node_exporter does).
    pub fn new(dir: PathBuf) -> Self {
        TextfileCollector {
            dir,
            logged: BTreeSet::new(),
        }
    }
}

impl Collector for TextfileCollector {
    fn name(&self) -> &'static str {
        "textfile"
    }

    fn exclusive(&self) -> bool {
        true
    }

    fn collect<'a>(&'a mut self, out: &'a mut MetricBuffer) -> CollectFuture<'a> {
        Box::pin(async move {
            let dir = self.dir.clone();
            let reading = tokio::task::spawn_blocking(move || read_dir(&dir))
                .await
                .map_err(|e| {
                    CollectError::Failed(format!("reading the textfile directory: {e}"))
                })?;
            let problems: BTreeSet<String> = reading.problems.iter().cloned().collect();
            for p in problems.difference(&self.logged) {
                tracing::warn!(collector = "textfile", problem = %p, "textfile skipped");
            }
            if !self.logged.is_empty() && problems.is_empty() {
                tracing::info!(collector = "textfile", dir = %self.dir.display(), "every textfile reads again");
            }
            self.logged = problems;
            reading.write(out);
            Ok(())
        })
    }
}

/// What one collection read.
#[derive(Debug, Default, PartialEq)]
pub struct Reading {
    /// The merged families of every good file.
    pub families: Vec<Family>,
    /// Path and mtime (whole Unix seconds) of every good file, in name order.
    pub mtimes: Vec<(String, f64)>,
    /// Whether a file or the directory could not be read or parsed.
    pub error: bool,
    /// What went wrong or was dropped, for the log.
    pub problems: Vec<String>,
}

impl Reading {
    /// Appends the families, `node_textfile_mtime_seconds` and `node_textfile_scrape_error`.
    pub fn write(self, out: &mut MetricBuffer) {
        for family in self.families {
            out.push_family(family);
        }
        for (file, mtime) in &self.mtimes {
            out.gauge(OWN_FAMILIES[0], MTIME_HELP, &[("file", file)], *mtime);
        }
        out.gauge(
            OWN_FAMILIES[1],
            ERROR_HELP,
            &[],
            if self.error { 1.0 } else { 0.0 },
        );
    }
}

/// One good file: its path and families.
struct FileFamilies {
    path: String,
    families: Vec<Family>,
}

/// Reads every `*.prom` file of `dir` and merges them the way node_exporter does.
pub fn read_dir(dir: &Path) -> Reading {
    let mut reading = Reading::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            reading.error = true;
            reading
                .problems
                .push(format!("cannot read directory {}: {e}", dir.display()));
            return reading;
        }
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.as_encoded_bytes().ends_with(b".prom"))
        .collect();
    names.sort();
    if names.len() > MAX_FILES {
        reading.error = true;
        reading.problems.push(format!(
            "{} holds {} *.prom files; only the first {MAX_FILES} are read",
            dir.display(),
            names.len()
        ));
        names.truncate(MAX_FILES);
    }
    let mut good = Vec::new();
    for name in names {
        let path = dir.join(&name);
        match read_file(&path) {
            Ok(Some((families, mtime))) => {
                reading.mtimes.push((path.display().to_string(), mtime));
                good.push(FileFamilies {
                    path: path.display().to_string(),
                    families,
                });
            }
            Ok(None) => {}
            Err(problem) => {
                reading.error = true;
                reading.problems.push(problem);
            }
        }
    }
    reading.families = merge(good, &mut reading.problems);
    reading
}

/// One file's families (labels made uniform within each family) and its mtime; `None` for
/// what is not a regular file; an error naming the file and the problem.
fn read_file(path: &Path) -> Result<Option<(Vec<Family>, f64)>, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot stat {shown}: {e}"))?;
    if !meta.is_file() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{shown} is larger than {} MiB",
            MAX_FILE_BYTES >> 20
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| format!("{shown} is not valid UTF-8"))?;
    check_strict(text).map_err(|e| format!("{shown}: {e}"))?;
    let mut families =
        fleetgate_shared::text::parse(text).map_err(|e| format!("cannot parse {shown}: {e}"))?;
    for family in &mut families {
        check_family(family).map_err(|e| format!("{shown}: {e}"))?;
        uniform_labels(family);
    }
    // Only once parsed and checked, as node_exporter does, so a bad file never looks fresh.
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs() as f64);
    Ok(Some((families, mtime)))
}

/// What node_exporter's parser refuses and the shared, lenient one lets through: sample
/// timestamps, a second HELP or TYPE line for a name, carriage returns, no final newline.
fn check_strict(text: &str) -> Result<(), String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(
            "the last line does not end with a newline (a file still being written?)".into(),
        );
    }
    let mut helps = HashSet::new();
    let mut types = HashSet::new();
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.contains('\r') {
            return Err(format!(
                "line {n} ends with a carriage return (Windows line endings)"
            ));
        }
        let line = line.trim_start();
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            let (keyword, name) = (words.next(), words.next());
            let seen = match keyword {
                Some("HELP") => &mut helps,
                Some("TYPE") => &mut types,
                _ => continue,
            };
            if let Some(name) = name {
                if !seen.insert(name.to_string()) {
                    return Err(format!(
                        "line {n}: second {} line for {name}",
                        keyword.unwrap_or_default()
                    ));
                }
            }
            continue;
        }
        if !line.is_empty() && sample_has_timestamp(line) {
            return Err(format!(
                "line {n}: sample with a timestamp; client-side timestamps are not supported, the whole file is skipped"
            ));
        }
    }
    Ok(())
}

/// Whether a sample line has a third field after its name-and-labels and value.
fn sample_has_timestamp(line: &str) -> bool {
    let rest = match line.find(['{', ' ', '\t']) {
        Some(i) if line.as_bytes()[i] == b'{' => {
            // Skip the label set, minding quoted values with escapes.
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = None;
            for (j, c) in line[i..].char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_quotes => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    '}' if !in_quotes => {
                        end = Some(i + j + 1);
                        break;
                    }
                    _ => {}
                }
            }
            match end {
                Some(e) => &line[e..],
                None => return false, // the parser names this error
            }
        }
        Some(i) => &line[i..],
        None => "",
    };
    rest.split_ascii_whitespace().count() >= 2
}

/// Refuses what the hub would refuse for the whole push, or what node_exporter cannot serve.
fn check_family(family: &Family) -> Result<(), String> {
    let name = &family.name;
    if name.starts_with("fleetgate_") {
        return Err(format!(
            "family {name} is in Fleetgate's own fleetgate_ namespace"
        ));
    }
    // A label named twice in one sample is refused by the text parser already.
    for series in &family.series {
        for label in &series.labels {
            if label.name.starts_with("__") {
                return Err(format!(
                    "label name {:?} of {name} is reserved (starts with __)",
                    label.name
                ));
            }
        }
    }
    Ok(())
}

/// Gives every series of `family` every label name used in it, missing ones empty.
fn uniform_labels(family: &mut Family) {
    let all: BTreeSet<String> = family
        .series
        .iter()
        .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
        .collect();
    for series in &mut family.series {
        if series.labels.len() == all.len() {
            continue;
        }
        for name in &all {
            if !series.labels.iter().any(|l| &l.name == name) {
                series.labels.push(Label::new(name.clone(), ""));
            }
        }
    }
}

/// Merges the good files' families: the first file to hold a family sets its HELP and TYPE,
/// later files add series when theirs agree; a repeated series keeps its first value.
fn merge(files: Vec<FileFamilies>, problems: &mut Vec<String>) -> Vec<Family> {
    let mut holders: HashMap<String, Vec<String>> = HashMap::new();
    for file in &files {
        for family in &file.families {
            holders
                .entry(family.name.clone())
                .or_default()
                .push(file.path.clone());
        }
    }
    let mut merged: Vec<Family> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut seen_series: HashMap<String, HashSet<Vec<Label>>> = HashMap::new();
    for file in files {
        for mut family in file.families {
            if OWN_FAMILIES.contains(&family.name.as_str()) {
                problems.push(format!(
                    "{}: family {} is the textfile collector's own; dropped",
                    file.path, family.name
                ));
                continue;
            }
            if family.help.is_empty() {
                family.help = format!("Metric read from {}", holders[&family.name].join(", "));
            }
            let seen = seen_series.entry(family.name.clone()).or_default();
            let series: Vec<_> = std::mem::take(&mut family.series)
                .into_iter()
                .filter(|s| {
                    let mut key = s.labels.clone();
                    key.sort_by(|a, b| a.name.cmp(&b.name));
                    seen.insert(key)
                })
                .collect();
            match index.get(&family.name) {
                None => {
                    index.insert(family.name.clone(), merged.len());
                    family.series = series;
                    merged.push(family);
                }
                Some(&i) if merged[i].kind == family.kind && merged[i].help == family.help => {
                    merged[i].series.extend(series);
                }
                Some(&i) => problems.push(format!(
                    "{}: family {} ({}, HELP {:?}) disagrees with an earlier file ({}, HELP {:?}); its series are dropped",
                    file.path,
                    family.name,
                    family.kind.as_str(),
                    family.help,
                    merged[i].kind.as_str(),
                    merged[i].help
                )),
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetgate_shared::{MetricType, Value};

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn family<'a>(r: &'a Reading, name: &str) -> Option<&'a Family> {
        r.families.iter().find(|f| f.name == name)
    }

    fn labels(s: &fleetgate_shared::Series) -> Vec<(String, String)> {
        let mut l: Vec<_> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        l.sort();
        l
    }

    #[test]
    fn good_files_merge_and_bad_ones_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.prom", "# HELP job_ok Last success.\n# TYPE job_ok gauge\njob_ok{job=\"backup\"} 1\njob_ok{job=\"rotate\",extra=\"x\"} 0\nplain 3\n");
        write(d, "b.prom", "plain{src=\"b\"} 4\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 1\nlat_bucket{le=\"+Inf\"} 3\nlat_sum 0.5\nlat_count 3\n");
        write(d, "ts.prom", "with_ts 1 1700000000000\n");
        write(d, "bad.prom", "this is not { valid\n");
        write(d, "notes.txt", "ignored 1\n");
        let r = read_dir(d);
        assert!(r.error);
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("ts.prom") && p.contains("timestamp")));
        let files: Vec<_> = r
            .mtimes
            .iter()
            .map(|(f, _)| f.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(files, ["a.prom", "b.prom"]);
        assert!(r.mtimes[0].1 > 1.0e9 && r.mtimes[0].1.fract() == 0.0);

        let job = family(&r, "job_ok").unwrap();
        assert_eq!(
            (job.kind, job.help.as_str()),
            (MetricType::Gauge, "Last success.")
        );
        assert_eq!(
            labels(&job.series[0]),
            [("extra".into(), "".into()), ("job".into(), "backup".into())]
        );
        let plain = family(&r, "plain").unwrap();
        assert_eq!(plain.series.len(), 2);
        assert_eq!(
            plain.help,
            format!(
                "Metric read from {}, {}",
                d.join("a.prom").display(),
                d.join("b.prom").display()
            )
        );
        let lat = family(&r, "lat").unwrap();
        assert!(matches!(&lat.series[0].value, Value::Histogram(h) if h.count == 3.0));
        assert!(family(&r, "with_ts").is_none() && family(&r, "ignored").is_none());

        let mut out = MetricBuffer::new();
        r.write(&mut out);
        let fams = out.into_families();
        let err = fams
            .iter()
            .find(|f| f.name == "node_textfile_scrape_error")
            .unwrap();
        assert_eq!(err.series[0].value, Value::Scalar(1.0));
    }

    #[test]
    fn disagreeing_and_repeated_series_keep_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "1.prom", "# TYPE shared counter\nshared{src=\"1\"} 1\n# HELP h From 1.\nh 1\ndup{a=\"1\"} 1\ndup{a=\"1\"} 2\n");
        write(
            d,
            "2.prom",
            "shared{src=\"2\"} 2\n# HELP h From 2.\nh{x=\"2\"} 2\n",
        );
        let r = read_dir(d);
        assert!(!r.error, "{:?}", r.problems);
        assert_eq!(family(&r, "shared").unwrap().series.len(), 1);
        assert_eq!(family(&r, "h").unwrap().series.len(), 1);
        assert_eq!(family(&r, "dup").unwrap().series.len(), 1);
        assert_eq!(
            family(&r, "dup").unwrap().series[0].value,
            Value::Scalar(1.0)
        );
        assert_eq!(r.problems.len(), 2, "{:?}", r.problems);
    }

    #[test]
    fn node_exporter_strictness_and_fleetgate_rules() {
        let cases = [
            ("# HELP x a\n# HELP x b\nx 1\n", "second HELP"),
            ("# TYPE x gauge\n# TYPE x counter\nx 1\n", "second TYPE"),
            ("x 1\n# TYPE x gauge\n", "TYPE"),
            ("x 1", "newline"),
            ("x 1\r\n", "carriage return"),
            ("x{a=\"1\",a=\"2\"} 1\n", "label a twice"),
            ("x{__a=\"1\"} 1\n", "reserved"),
            ("fleetgate_agent_up 1\n", "fleetgate_"),
            ("x{a=\"}\\\" 1\"} 1 17\n", "timestamp"),
            ("x 1 2 3\n", ""),
        ];
        for (text, problem) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), "f.prom", text);
            let r = read_dir(dir.path());
            assert!(r.error, "{text:?} was accepted");
            assert!(r.families.is_empty() && r.mtimes.is_empty(), "{text:?}");
            assert!(
                r.problems[0].contains(problem),
                "{text:?}: {:?}",
                r.problems
            );
        }
        // Fine: a label value holding what looks like a timestamp, an empty file, NaN.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f.prom", "x{a=\"} 1 2\"} 1\ny NaN\n");
        write(dir.path(), "empty.prom", "");
        let r = read_dir(dir.path());
        assert!(!r.error, "{:?}", r.problems);
        assert_eq!(r.mtimes.len(), 2);
        assert_eq!(r.families.len(), 2);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_failure() {
        let r = read_dir(Path::new("/nonexistent/fleetgate-textfile"));
        assert!(r.error && r.families.is_empty());
        let mut out = MetricBuffer::new();
        r.write(&mut out);
        assert_eq!(out.families().len(), 1);
    }
}
