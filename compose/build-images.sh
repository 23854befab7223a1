#!/usr/bin/env bash
# Builds the Fleetgate images without any registry: the binaries are compiled on this host and
# packed into FROM scratch images (docker/*.Dockerfile take a rootfs.tar from the build context).
#   compose/build-images.sh [--tag TAG] [--profile release|dev] [--gpu]
# Images: fleetgate-hub:TAG and fleetgate-agent:TAG (static glibc binaries, crt-static) and, with
# --gpu, fleetgate-agent-gpu:TAG (dynamically linked agent plus its glibc libraries, so NVML can be
# loaded from the library the NVIDIA container toolkit injects).
# Needs: cargo, docker, file, a static busybox at /bin/busybox (Debian: busybox-static) and the
# static glibc archives (Debian: libc6-dev).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=latest
profile=release
gpu=false
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --gpu) gpu=true; shift ;;
    *) echo "usage: $0 [--tag TAG] [--profile release|dev] [--gpu]" >&2; exit 2 ;;
  esac
done
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "unknown profile: $profile" >&2; exit 2 ;;
esac
busybox=${BUSYBOX:-/bin/busybox}
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  echo "need a static busybox at $busybox (Debian package busybox-static)" >&2
  exit 1
fi

cd "$root"
triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$root/target}
# An explicit --target keeps crt-static off build scripts and proc macros and gives the static
# artefacts their own directory.
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --profile "$profile" --target "$triple" -p fleetgate-hub -p fleetgate-agent
static_bin=$target_dir/$triple/$profile_dir
for bin in fleetgate-hub fleetgate-agent; do
  if ! file "$static_bin/$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "$static_bin/$bin is not statically linked" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build_image NAME IMAGE OWNER_DIR: packs $work/NAME/root (root-owned) plus OWNER_DIR (an empty
# directory owned by 65534, if given) into rootfs.tar and builds IMAGE:TAG from it.
build_image() {
  local name=$1 image=$2 owned_dir=${3:-}
  local ctx=$work/$name
  install -D -m 0755 "$busybox" "$ctx/root/bin/busybox"
  tar -C "$ctx/root" --owner=0 --group=0 --numeric-owner -cf "$ctx/rootfs.tar" .
  if [ -n "$owned_dir" ]; then
    mkdir -p "$ctx/owned/$owned_dir"
    tar -C "$ctx/owned" --owner=65534 --group=65534 --numeric-owner -rf "$ctx/rootfs.tar" "$owned_dir"
  fi
  cp "$root/docker/$name.Dockerfile" "$ctx/Dockerfile"
  # The legacy builder prints a deprecation notice on every build; show its output only on failure.
  if ! out=$(docker build -q -t "$image:$tag" -f "$ctx/Dockerfile" "$ctx" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
  printf '%-28s %s\n' "$image:$tag" "$(docker image inspect -f '{{.Size}}' "$image:$tag" | numfmt --to=iec)"
}

install -D -m 0755 "$static_bin/fleetgate-hub" "$work/hub/root/fleetgate-hub"
build_image hub fleetgate-hub data

install -D -m 0755 "$static_bin/fleetgate-agent" "$work/agent/root/fleetgate-agent"
mkdir -p "$work/agent/root/var/lib/fleetgate-agent"
build_image agent fleetgate-agent

if $gpu; then
  cargo build --profile "$profile" -p fleetgate-agent
  dyn=$target_dir/$profile_dir/fleetgate-agent
  groot=$work/agent-gpu/root
  install -D -m 0755 "$dyn" "$groot/fleetgate-agent"
  mkdir -p "$groot/var/lib/fleetgate-agent" "$groot/tmp"
  # The loader and every library ldd resolves, at the same paths as on the build host.
  for lib in $(ldd "$dyn" | grep -o '/[^ ]*'); do
    install -D "$(readlink -f "$lib")" "$groot$lib"
  done
  build_image agent-gpu fleetgate-agent-gpu
fi
