//! Container metrics with cAdvisor names from the Docker Engine API (placeholder: being written).
