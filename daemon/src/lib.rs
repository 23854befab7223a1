//! What the hub and the agent share as long-running processes, so that each exists once:
//! durable file writes ([`durable`]), layered configuration with errors that name the setting
//! and one rule for secrets ([`settings`]), the shutdown signal and logging ([`process`]).
//!
//! It knows nothing of metrics, HTTP or the wire format (that is `fleetgate-shared`).

pub mod durable;
pub mod process;
pub mod settings;

pub use durable::write_atomic;
pub use settings::{ConfigError, Given, Key, Layers, Secret};
