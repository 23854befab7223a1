//! `selinux`: whether SELinux is enabled and, when it is, its current enforcement mode.

use super::{read_value, HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// The selinux collector.
#[derive(Debug, Default)]
pub(super) struct Selinux {
    /// Reused read buffer.
    text: String,
}

impl Subcollector for Selinux {
    fn name(&self) -> &'static str {
        "selinux"
    }

    fn collect(&mut self, paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        // selinuxfs exposes `enforce` exactly when SELinux is enabled.
        let Ok(enforce) = read_value(&paths.sys("fs/selinux/enforce"), &mut self.text) else {
            out.gauge(
                "node_selinux_enabled",
                "SELinux is enabled, 1 is true, 0 is false",
                &[],
                0.0,
            );
            return Ok(());
        };
        let current = if enforce == "1" { 1.0 } else { 0.0 };
        out.gauge(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            &[],
            1.0,
        );
        out.gauge(
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            &[],
            current,
        );
        Ok(())
    }
}
