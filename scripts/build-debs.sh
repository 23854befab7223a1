#!/usr/bin/env bash
# Builds the Debian packages fleetgate-hub and fleetgate-agent into dist/:
#   scripts/build-debs.sh [--out DIR] [--no-build] [--revision N]
# Each package is a staged tree packed by dpkg-deb: the release binary (stripped), its systemd
# unit (packaging/systemd/), its conffile under /etc/fleetgate/ (packaging/etc/), the maintainer
# scripts (packaging/deb/<package>/), a man page made from --help by help2man, and the copyright
# and changelog files. Depends: comes from dpkg-shlibdeps. Timestamps come from the last commit
# (SOURCE_DATE_EPOCH), so the same commit gives the same packages.
# --no-build packs the binaries already in $CARGO_TARGET_DIR/release (default target/release).
# Needs: cargo, dpkg-deb and dpkg-shlibdeps (Debian: dpkg-dev), help2man, strip (binutils).
# Maintainer: $DEBFULLNAME <$DEBEMAIL> when set.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/dist
build=true
revision=1
usage() { echo "usage: $0 [--out DIR] [--no-build] [--revision N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --no-build) build=false; shift ;;
    --revision) [ $# -ge 2 ] || usage; revision=$2; shift 2 ;;
    *) usage ;;
  esac
done
case "$revision" in
  ''|*[!0-9a-z.+~]*) echo "--revision must be a Debian revision such as 1 or 2~rc1, not '$revision'" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg-shlibdeps help2man strip gzip; do
  command -v "$tool" >/dev/null || {
    echo "$tool not found (Debian packages: dpkg-dev, help2man, binutils)" >&2
    exit 1
  }
done

cd "$root"
upstream=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[ -n "$upstream" ] || { echo "no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
version=$upstream-$revision
arch=$(dpkg --print-architecture)
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
maintainer="${DEBFULLNAME:-Fleetgate developers} <${DEBEMAIL:-fleetgate@users.noreply.github.com}>"
bin_dir=${CARGO_TARGET_DIR:-$root/target}/release

if $build; then
  cargo build --release --locked -p fleetgate-hub -p fleetgate-agent
fi
for bin in fleetgate-hub fleetgate-agent; do
  [ -x "$bin_dir/$bin" ] || { echo "no $bin_dir/$bin (build it, or drop --no-build)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# stage PACKAGE CONFIG SUMMARY DESCRIPTION [EXTRA_DEPENDS]: writes dist/PACKAGE_VERSION_ARCH.deb.
stage() {
  local pkg=$1 config=$2 summary=$3 description=$4 extra_depends=${5:-}
  local tree=$work/$pkg
  install -D -m 0755 "$bin_dir/$pkg" "$tree/usr/bin/$pkg"
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$tree/usr/bin/$pkg"
  install -D -m 0644 "packaging/systemd/$pkg.service" "$tree/lib/systemd/system/$pkg.service"
  install -D -m 0644 "packaging/etc/$config" "$tree/etc/fleetgate/$config"

  # The man page: --help and --version of the binary, in an empty environment so that no
  # FLEETGATE_* variable of the build shows as a default, plus FILES and SEE ALSO.
  mkdir -p "$tree/usr/share/man/man1"
  env -i PATH=/usr/bin:/bin help2man --no-info --no-discard-stderr \
    --include "packaging/man/$pkg.h2m" --output "$work/$pkg.1" "$tree/usr/bin/$pkg"
  gzip -9n <"$work/$pkg.1" >"$tree/usr/share/man/man1/$pkg.1.gz"

  local doc=$tree/usr/share/doc/$pkg
  mkdir -p "$doc"
  cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fleetgate
Source: https://github.com/fleetgate/fleetgate

Files: *
Copyright: $year The Fleetgate contributors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be found in
 /usr/share/common-licenses/Apache-2.0.
EOF
  {
    printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$version"
    printf '  * Built from commit %s.\n\n' "$commit"
    printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
  } | gzip -9n >"$doc/changelog.Debian.gz"
  # Built from this repository, not uploaded to Debian: there is no ITP bug to close.
  mkdir -p "$tree/usr/share/lintian/overrides"
  echo "$pkg: initial-upload-closes-no-bugs" >"$tree/usr/share/lintian/overrides/$pkg"

  # Depends from the libraries the binary links (dpkg-shlibdeps wants a debian/control to run in).
  mkdir -p "$work/shlibs-$pkg/debian"
  printf 'Source: fleetgate\n\nPackage: %s\nArchitecture: any\n' "$pkg" >"$work/shlibs-$pkg/debian/control"
  local shlibs
  shlibs=$(cd "$work/shlibs-$pkg" && dpkg-shlibdeps -O -e"$tree/usr/bin/$pkg" 2>/dev/null \
    | sed -n 's/^shlibs:Depends=//p')
  [ -n "$shlibs" ] || { echo "dpkg-shlibdeps found no dependencies for $pkg" >&2; exit 1; }

  mkdir -p "$tree/DEBIAN"
  install -m 0755 "packaging/deb/$pkg/postinst" "packaging/deb/$pkg/prerm" "packaging/deb/$pkg/postrm" "$tree/DEBIAN/"
  echo "/etc/fleetgate/$config" >"$tree/DEBIAN/conffiles"
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
    echo "Depends: $shlibs${extra_depends:+, $extra_depends}"
    echo "Section: net"
    echo "Priority: optional"
    echo "Homepage: https://github.com/fleetgate/fleetgate"
    echo "Description: $summary"
    printf '%s\n' "$description" | fold -s -w 76 | sed 's/ *$//; s/^/ /'
  } >"$tree/DEBIAN/control"
  (cd "$tree" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort \
    | grep -v '^etc/' | xargs md5sum) >"$tree/DEBIAN/md5sums"

  find "$tree" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
  local deb=$out/${pkg}_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$tree" "$deb" >/dev/null
  printf '%-48s %s\n' "$deb" "$(du -h "$deb" | cut -f1)"
}

stage fleetgate-hub hub.toml \
  "Fleetgate hub: one federated /metrics for a fleet of pushing agents" \
  "The hub accepts zstd-compressed metric snapshots pushed by enrolled fleetgate agents (and Prometheus text from any script) and serves every node's latest metrics on one /metrics, each series labelled with its node. Prometheus scrapes only the hub. The systemd unit runs it as a dynamic user; settings are in /etc/fleetgate/hub.toml, state in /var/lib/fleetgate-hub."
stage fleetgate-agent agent.toml \
  "Fleetgate agent: pushes host, GPU, container and Triton metrics" \
  "The agent collects what node_exporter, dcgm-exporter (through NVML), cAdvisor (through the Docker API) and Triton's metrics port expose, under the same names, and pushes it to a fleetgate hub; it only makes outbound connections. The systemd unit runs it as the system user fleetgate-agent; settings are in /etc/fleetgate/agent.toml, the enrollment token in /etc/fleetgate/enroll.token." \
  "adduser"
