# fleetgate-agent for GPU servers. NVML (libnvidia-ml.so.1) is loaded at run time from the library
# the NVIDIA container toolkit injects, and a statically linked binary cannot dlopen it safely, so
# this image carries the dynamically linked agent plus exactly the glibc libraries it needs
# (ld-linux, libc, libm, libgcc_s, ...), copied from the build host by compose/build-images.sh.
# Still FROM scratch: no shell, no package manager.
FROM scratch
ADD rootfs.tar /
VOLUME ["/var/lib/fleetgate-agent"]
ENV FLEETGATE_STATE_DIR=/var/lib/fleetgate-agent \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility
ENTRYPOINT ["/fleetgate-agent"]
