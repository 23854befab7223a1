//! `uname`: `node_uname_info{sysname,release,version,machine,nodename,domainname} 1`, which
//! Node Exporter Full builds all its variables from.

use super::{HostPaths, SubError, Subcollector};
use crate::collectors::MetricBuffer;

/// What uname(2) says about the running kernel and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnameInfo {
    /// Kernel name (`Linux`).
    pub sysname: String,
    /// Host name in the agent's UTS namespace.
    pub nodename: String,
    /// Kernel release (`6.1.0-18-amd64`).
    pub release: String,
    /// Kernel build version string.
    pub version: String,
    /// Hardware name (`x86_64`).
    pub machine: String,
    /// NIS domain name (`(none)` when unset).
    pub domainname: String,
}

/// uname(2) of the running system; `None` only if the call fails.
#[allow(unsafe_code)]
pub fn uname_info() -> Option<UnameInfo> {
    // SAFETY: an all-zero `utsname` is a valid value of this plain C struct.
    let mut buf: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `buf` is a valid, exclusively borrowed `utsname` for the kernel to fill in.
    if unsafe { libc::uname(&mut buf) } != 0 {
        return None;
    }
    let field = |raw: &[libc::c_char]| -> String {
        // The kernel NUL-terminates every field; the zeroed buffer guarantees it otherwise.
        let bytes: Vec<u8> = raw
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Some(UnameInfo {
        sysname: field(&buf.sysname),
        nodename: field(&buf.nodename),
        release: field(&buf.release),
        version: field(&buf.version),
        machine: field(&buf.machine),
        domainname: field(&buf.domainname),
    })
}

/// The uname collector.
#[derive(Debug)]
pub(super) struct Uname;

impl Subcollector for Uname {
    fn name(&self) -> &'static str {
        "uname"
    }

    fn collect(&mut self, _paths: &HostPaths, out: &mut MetricBuffer) -> Result<(), SubError> {
        let u = uname_info().ok_or_else(|| SubError::Failed("uname failed".into()))?;
        out.gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            &[
                ("domainname", &u.domainname),
                ("machine", &u.machine),
                ("nodename", &u.nodename),
                ("release", &u.release),
                ("sysname", &u.sysname),
                ("version", &u.version),
            ],
            1.0,
        );
        Ok(())
    }
}
