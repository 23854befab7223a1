//! Fleetgate agent library: collectors, the push loop and the hub client; `main.rs` is a thin
//! wrapper around it.

pub mod collectors;
pub mod hub_client;
