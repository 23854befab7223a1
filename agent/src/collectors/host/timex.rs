//! `timex`: the kernel clock discipline's state from adjtimex(2) (read only).

use fleetgate_shared::MetricType;

use super::{HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// adjtimex's return value when the clock is not synchronized.
const TIME_ERROR: i32 = 5;
/// `status` bit: offsets and jitter are in nanoseconds instead of microseconds.
const STA_NANO: i32 = 0x2000;
/// Frequencies are in parts per million with a 16-bit fraction (see NOTES in adjtimex(2)).
const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;

/// The timex collector; stateless, adjtimex reads the running kernel.
#[derive(Debug)]
pub(super) struct Timex;

impl Subcollector for Timex {
    fn name(&self) -> &'static str {
        "timex"
    }

    fn collect(&mut self, _paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let (state, tx) = adjtimex().map_err(|e| SubError::Failed(format!("adjtimex: {e}")))?;
        let divisor = if tx.status & STA_NANO != 0 { 1e9 } else { 1e6 };
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        #[allow(clippy::unnecessary_cast)] // field widths differ between architectures
        let values = [
            (
                "node_timex_sync_status",
                "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
                gauge,
                if state == TIME_ERROR { 0.0 } else { 1.0 },
            ),
            (
                "node_timex_offset_seconds",
                "Time offset in between local system and reference clock.",
                gauge,
                tx.offset as f64 / divisor,
            ),
            (
                "node_timex_frequency_adjustment_ratio",
                "Local clock frequency adjustment.",
                gauge,
                1.0 + tx.freq as f64 / PPM16FRAC,
            ),
            (
                "node_timex_maxerror_seconds",
                "Maximum error in seconds.",
                gauge,
                tx.maxerror as f64 / 1e6,
            ),
            (
                "node_timex_estimated_error_seconds",
                "Estimated error in seconds.",
                gauge,
                tx.esterror as f64 / 1e6,
            ),
            (
                "node_timex_status",
                "Value of the status array bits.",
                gauge,
                tx.status as f64,
            ),
            (
                "node_timex_loop_time_constant",
                "Phase-locked loop time constant.",
                gauge,
                tx.constant as f64,
            ),
            (
                "node_timex_tick_seconds",
                "Seconds between clock ticks.",
                gauge,
                tx.tick as f64 / 1e6,
            ),
            (
                "node_timex_pps_frequency_hertz",
                "Pulse per second frequency.",
                gauge,
                tx.ppsfreq as f64 / PPM16FRAC,
            ),
            (
                "node_timex_pps_jitter_seconds",
                "Pulse per second jitter.",
                gauge,
                tx.jitter as f64 / divisor,
            ),
            (
                "node_timex_pps_shift_seconds",
                "Pulse per second interval duration.",
                gauge,
                tx.shift as f64,
            ),
            (
                "node_timex_pps_stability_hertz",
                "Pulse per second stability, average of recent frequency changes.",
                gauge,
                tx.stabil as f64 / PPM16FRAC,
            ),
            (
                "node_timex_pps_jitter_total",
                "Pulse per second count of jitter limit exceeded events.",
                counter,
                tx.jitcnt as f64,
            ),
            (
                "node_timex_pps_calibration_total",
                "Pulse per second count of calibration intervals.",
                counter,
                tx.calcnt as f64,
            ),
            (
                "node_timex_pps_error_total",
                "Pulse per second count of calibration errors.",
                counter,
                tx.errcnt as f64,
            ),
            (
                "node_timex_pps_stability_exceeded_total",
                "Pulse per second count of stability limit exceeded events.",
                counter,
                tx.stbcnt as f64,
            ),
            (
                "node_timex_tai_offset_seconds",
                "International Atomic Time (TAI) offset.",
                gauge,
                tx.tai as f64,
            ),
        ];
        for (family, help, kind, value) in values {
            out.sample(family, help, kind, &[], value);
        }
        Ok(())
    }
}

/// The clock state (adjtimex's return value) and the `timex` it filled in.
#[allow(unsafe_code)]
fn adjtimex() -> std::io::Result<(i32, libc::timex)> {
    // SAFETY: an all-zero `timex` is a valid value of this plain C struct; `modes == 0` makes
    // the call read-only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed `timex` for the kernel to fill in.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((state, tx))
}
