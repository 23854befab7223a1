# fleetgate-agent (CPU servers): a static binary in an empty image, built on the host by
# compose/build-images.sh (no registry, so no Rust build stage). rootfs.tar holds /fleetgate-agent,
# /bin/busybox (static, for the healthcheck) and /var/lib/fleetgate-agent.
# Runs as root: it reads the Docker socket and the host's /proc/1/mountinfo, as cAdvisor and
# node_exporter do; every host mount in compose/app-*.yml is read-only.
FROM scratch
ADD rootfs.tar /
VOLUME ["/var/lib/fleetgate-agent"]
ENV FLEETGATE_STATE_DIR=/var/lib/fleetgate-agent
ENTRYPOINT ["/fleetgate-agent"]
