//! Host metrics with node_exporter names (placeholder: being written).
