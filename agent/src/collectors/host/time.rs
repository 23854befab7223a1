//! `time`: the system clock, the local time zone's offset and the clock sources of
//! /sys/devices/system/clocksource.

use std::ffi::CStr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{numbered_entries, read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The time collector.
#[derive(Debug, Default)]
pub(super) struct Time {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| SubError::Failed(format!("clock before 1970: {e}")))?;
        out.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            &[],
            now.as_secs_f64(),
        );
        if let Some((zone, offset)) = local_zone(now.as_secs()) {
            out.gauge(
                "node_time_zone_offset_seconds",
                "System time zone offset in seconds.",
                &[("time_zone", &zone)],
                offset as f64,
            );
        }
        let sources = paths.sys("devices/system/clocksource");
        for (n, dir) in numbered_entries(&sources, "clocksource")? {
            let device = n.to_string();
            let available = read_value(&dir.join("available_clocksource"), &mut self.text)?;
            for source in available.split_ascii_whitespace() {
                out.gauge(
                    "node_time_clocksource_available_info",
                    "Available clocksources read from '/sys/devices/system/clocksource'.",
                    &[("clocksource", source), ("device", &device)],
                    1.0,
                );
            }
            let current = read_value(&dir.join("current_clocksource"), &mut self.text)?;
            out.gauge(
                "node_time_clocksource_current_info",
                "Current clocksource read from '/sys/devices/system/clocksource'.",
                &[("clocksource", current), ("device", &device)],
                1.0,
            );
        }
        Ok(())
    }
}

/// The local time zone's abbreviation and offset from UTC in seconds at `unix_seconds`.
#[allow(unsafe_code)]
fn local_zone(unix_seconds: u64) -> Option<(String, i64)> {
    let t = libc::time_t::try_from(unix_seconds).ok()?;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r writes only into `tm`.
    let result = unsafe { libc::localtime_r(&t, &mut tm) };
    if result.is_null() {
        return None;
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: glibc points tm_zone at a NUL-terminated abbreviation in its static time zone
        // data, valid at least until the next tzset; it is copied at once.
        unsafe { CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    Some((zone, tm.tm_gmtoff))
}
