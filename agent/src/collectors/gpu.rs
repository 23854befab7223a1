//! GPU metrics with dcgm-exporter names through NVML (placeholder: being written).
