//! Scrapes local /metrics endpoints (Triton and others) and forwards their families unchanged (placeholder: being written).
