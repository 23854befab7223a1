//! GPU metrics with dcgm-exporter names through NVML (being written).
