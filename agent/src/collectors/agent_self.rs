//! The agent's own metrics: collector health, push statistics and process_* (placeholder: being written).
