# fleetgate-hub: a static binary in an empty image. There is no registry to pull a Rust build
# image from, so compose/build-images.sh builds the binary on the host and passes it in the build
# context (rootfs.tar): /fleetgate-hub, /bin/busybox (static, only for the healthcheck's wget) and
# /data owned by the unprivileged user the hub runs as.
FROM scratch
ADD rootfs.tar /
USER 65534:65534
VOLUME ["/data"]
EXPOSE 8000
ENV FLEETGATE_LISTEN=0.0.0.0:8000 \
    FLEETGATE_DATA_DIR=/data
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/healthz"]
ENTRYPOINT ["/fleetgate-hub"]
