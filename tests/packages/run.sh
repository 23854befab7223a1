#!/usr/bin/env bash
# The Debian packages under a real systemd. A Debian bookworm root made by debootstrap (minbase,
# systemd, dbus, python3 for Ansible) runs with systemd as PID 1 in a Docker container; a real
# fleetgate-hub runs on this machine, reachable from the container's network only. The suite:
#   - builds both packages with scripts/build-debs.sh and checks them with lintian (no warnings);
#   - installs them with dpkg -i: files, conffiles, the agent's system user, the hub as a dynamic
#     user with its state directory, both units verified and enabled, hardening exposure "OK";
#   - configures the agent as the README says (agent.toml, enroll.token): it enrolls with the hub
#     on this machine and its series reach /metrics, with every metric family an unconfined run
#     as root collects (the hardening costs nothing) and container metrics through the docker
#     group; the hub takes its own admin token from hub.env; a reinstall keeps the edited
#     conffile and restarts the agent; purging removes each package's state and /etc/fleetgate;
#   - runs the app-side playbook against the container over Ansible's docker connection: the
#     binary mode with the packaged unit file (run, stop), then the package mode over it: run
#     (the package's unit replaces the binary mode's; node up, series on /metrics), run again
#     (changed=0), stop (deregistered, series gone), run again (re-admitted).
# The root file system is built once and cached (tarball in $FLEETGATE_TEST_CACHE, default
# /var/cache/fleetgate-test, and a Docker image), keyed by its package list; delete both to
# rebuild. Everything else it starts is removed on exit.
#   tests/packages/run.sh
# Needs (as root): a running Docker engine, debootstrap, dpkg-dev, help2man, lintian, curl, the
# release binaries (built when missing) and .venv with the `ansible` package (community.docker).
# A missing tool fails the suite; FLEETGATE_ALLOW_SKIP=1 skips it instead.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/scripts/lib.sh"
target_dir=${CARGO_TARGET_DIR:-$root/target}
venv=${FLEETGATE_VENV:-$root/.venv}
cache_dir=${FLEETGATE_TEST_CACHE:-/var/cache/fleetgate-test}
mirror=${FLEETGATE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
id=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
container=fg-packages-systemd-$id
net=fg-packages-net-$id
started=$SECONDS

passed=0
step() { printf '\n--- packages (%ss): %s\n' "$((SECONDS - started))" "$*"; }
ok() { passed=$((passed + 1)); printf 'ok: %s\n' "$*"; }
fail() {
  printf 'FAILED: %s\n' "$*" >&2
  echo "packages: ${passed} passed, 1 failed ($((SECONDS - started))s)"
  exit 1
}
skip_or_fail() {
  if skipping_allowed; then
    echo "packages: SKIPPED: $*" >&2
    exit 0
  fi
  fail "$* (FLEETGATE_ALLOW_SKIP=1 skips this suite)"
}

# --- what the suite needs ------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip_or_fail "needs root (debootstrap, the packages' files)"
for tool in docker debootstrap dpkg-deb dpkg-shlibdeps help2man lintian curl flock; do
  command -v "$tool" >/dev/null || skip_or_fail "$tool not found (Debian packages: docker.io debootstrap dpkg-dev help2man lintian curl util-linux)"
done
docker info >/dev/null 2>&1 || skip_or_fail "no running Docker engine"
[ -x "$venv/bin/ansible-playbook" ] || skip_or_fail "no ansible-playbook in $venv (scripts/requirements-test.txt)"
"$venv/bin/ansible-doc" -t connection community.docker.docker >/dev/null 2>&1 \
  || skip_or_fail "Ansible's community.docker collection is missing from $venv (the ansible package in scripts/requirements-test.txt)"
socket_gid=$(stat -c %g /var/run/docker.sock)
[ "$socket_gid" != 0 ] || skip_or_fail "/var/run/docker.sock belongs to group root; the test needs a docker group to share with the agent"

TMP=$(mktemp -d /tmp/fg-packages.XXXXXX)
HUB_PID=
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND once a second until it succeeds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "gave up after ${limit}s waiting for: $what" >&2
  return 1
}
cx() { docker exec "$container" "$@"; }
cxi() { docker exec -i "$container" "$@"; }

# --- the packages ----------------------------------------------------------------------------------
step "building the packages (scripts/build-debs.sh)"
if [ ! -x "$target_dir/release/fleetgate-hub" ] || [ ! -x "$target_dir/release/fleetgate-agent" ]; then
  (cd "$root" && cargo build --release -p fleetgate-hub -p fleetgate-agent) || fail "cargo build --release"
fi
dist=$TMP/dist
"$root/scripts/build-debs.sh" --no-build --out "$dist" || fail "scripts/build-debs.sh"
hub_deb=$(echo "$dist"/fleetgate-hub_*.deb)
agent_deb=$(echo "$dist"/fleetgate-agent_*.deb)
[ -f "$hub_deb" ] && [ -f "$agent_deb" ] || fail "build-debs.sh did not write both packages to $dist"
for deb in "$hub_deb" "$agent_deb"; do
  # Whole outputs, not pipes into grep -q: with pipefail the writer's SIGPIPE would fail the check.
  control=$(dpkg-deb --info "$deb" control)
  contents=$(dpkg-deb --contents "$deb")
  grep -q '^Depends: libc6' <<<"$control" || fail "$(basename "$deb") has no libc6 dependency"
  grep -q ' ./etc/fleetgate/' <<<"$contents" || fail "$(basename "$deb") ships nothing in /etc/fleetgate"
done
ok "built $(basename "$hub_deb") and $(basename "$agent_deb")"

step "lintian"
# lintian warns when it runs as root; that line is not about the packages.
lintian --fail-on error,warning "$hub_deb" "$agent_deb" >"$TMP/lintian.log" 2>&1 \
  || { cat "$TMP/lintian.log"; fail "lintian reports errors or warnings"; }
grep -v 'root privileges' "$TMP/lintian.log" || true
ok "lintian: no errors, no warnings"

# --- a Debian root with systemd ---------------------------------------------------------------------
step "Debian bookworm root with systemd (cached in $cache_dir)"
include=systemd,systemd-sysv,dbus,python3,python3-apt
arch=$(dpkg --print-architecture)
key=$(printf 'bookworm minbase %s %s 1\n' "$include" "$arch" | sha256sum | cut -c1-16)
image=fg-packages-bookworm-systemd:$key
tarball=$cache_dir/bookworm-systemd-$arch-$key.tar
mkdir -p "$cache_dir"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  (
    # One builder at a time; a second run waits and then finds the tarball.
    flock -w 900 9 || { echo "waited 15 minutes for $cache_dir/.lock" >&2; exit 1; }
    if [ ! -s "$tarball" ]; then
      build_root=$(mktemp -d "$cache_dir/root.XXXXXX")
      echo "debootstrap --variant=minbase --include=$include bookworm (about two minutes, once)"
      if ! debootstrap --variant=minbase --include="$include" bookworm "$build_root" "$mirror" \
          >"$TMP/debootstrap.log" 2>&1; then
        tail -20 "$TMP/debootstrap.log" >&2
        rm -rf "$build_root"
        exit 1
      fi
      tar -C "$build_root" --numeric-owner -cf "$tarball.tmp" .
      mv "$tarball.tmp" "$tarball"
      rm -rf "$build_root"
    fi
    docker import "$tarball" "$image" >/dev/null
  ) 9>"$cache_dir/.lock" || fail "building the Debian root image"
fi
ok "image $image"

# On a cgroup-v1 host, systemd in the container mounts every enabled controller the host left
# unmounted (hugetlb, perf_event, net_cls,net_prio on a bare Docker host). Those hierarchies then
# exist in the kernel but not on the host, and the host's dockerd can no longer read container
# stats ("cannot find cgroup mount destination"). Mount them on the host first, so the container's
# systemd finds them through the shared /sys/fs/cgroup and both sides use the same hierarchies.
unmounted_controllers() {
  local mounted name hierarchy enabled
  mounted=$(awk '$3 == "cgroup" { print $4 }' /proc/mounts | tr ',' '\n')
  while read -r name hierarchy _ enabled; do
    [ "$enabled" = 1 ] && ! grep -qx -- "$name" <<<"$mounted" && echo "$name $hierarchy"
  done < <(grep -v '^#' /proc/cgroups)
  return 0
}
mount_cgroup_v1_controllers() {
  [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] || return 0
  local missing groups group dir
  missing=$(unmounted_controllers)
  [ -n "$missing" ] || return 0
  # Controllers already joined in one hierarchy mount together; new ones as systemd joins them.
  groups=$(awk '{ key = $2 != 0 ? $2 : ($1 ~ /^net_(cls|prio)$/ ? "net" : ($1 ~ /^cpu(acct)?$/ ? "cpu" : $1))
                  g[key] = g[key] ? g[key] "," $1 : $1 }
                END { for (k in g) print g[k] }' <<<"$missing")
  mount -o remount,rw /sys/fs/cgroup
  for group in $groups; do
    dir=/sys/fs/cgroup/$group
    mkdir -p "$dir"
    mountpoint -q "$dir" || mount -t cgroup -o "$group" cgroup "$dir" \
      || { mount -o remount,ro /sys/fs/cgroup; fail "mounting the cgroup-v1 controllers $group on the host"; }
    echo "mounted the host's unmounted cgroup controllers $group at $dir"
  done
  mount -o remount,ro /sys/fs/cgroup
}

step "systemd as PID 1 in a container"
mount_cgroup_v1_controllers
docker network create "$net" >/dev/null || fail "docker network create"
gateway=$(docker network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$net")
[ -n "$gateway" ] || fail "network $net has no gateway address"
# The flags systemd needs in a container; the Docker socket is shared for the containers collector.
docker run -d --name "$container" --hostname "$container" --network "$net" \
  --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock -e container=docker \
  -v /var/run/docker.sock:/var/run/docker.sock \
  "$image" /lib/systemd/systemd >/dev/null || fail "docker run $image"
system_running() { [ "$(cx systemctl is-system-running 2>/dev/null)" = running ]; }
if ! wait_for 90 "systemctl is-system-running = running" system_running; then
  echo "state: $(cx systemctl is-system-running 2>&1)" >&2
  cx systemctl --failed --no-pager >&2 || true
  fail "systemd did not reach running"
fi
container_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$container")
ok "systemctl is-system-running: running (container $container at $container_ip)"

# A hub on this machine, listening only on the container network's gateway address.
step "a hub on this machine ($gateway)"
mkdir -p "$TMP/hub"
"$target_dir/release/fleetgate-hub" --listen "$gateway:0" --data-dir "$TMP/hub" >"$TMP/hub.log" 2>&1 &
HUB_PID=$!
wait_for 20 "the hub's listen.addr" test -s "$TMP/hub/listen.addr" || { cat "$TMP/hub.log" >&2; fail "hub did not start"; }
HUB_URL="http://$(cat "$TMP/hub/listen.addr")"
ADMIN_TOKEN=$(cat "$TMP/hub/admin.token")
ENROLL_TOKEN=$(cat "$TMP/hub/enroll.token")
# Whole bodies into variables: a pipe into grep -q would stop reading early, and with pipefail
# the writer's SIGPIPE would turn a match into a failure.
metrics() { curl -fsS --max-time 5 "$HUB_URL/metrics"; }
nodes() { curl -fsS --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" "$HUB_URL/nodes"; }
# node_series NODE: the series the node pushed (not the hub's fleetgate_node_* about it).
node_series() {
  local body
  body=$(metrics) || return 1
  grep -E '^[a-zA-Z_:][a-zA-Z0-9_:]*\{' <<<"$body" | grep -v '^fleetgate_node_' | grep -F "node=\"$1\"" || true
}
node_has() { local series; series=$(node_series "$1") && grep -qE "$2" <<<"$series"; }
node_gone() { local body; body=$(metrics) && ! grep -qF "node=\"$1\"" <<<"$body"; }
node_state() {
  nodes | "$venv/bin/python" -c 'import json,sys; print(" ".join(n["state"] for n in json.load(sys.stdin) if n["node"] == sys.argv[1]))' "$1"
}
ok "hub at $HUB_URL"

# --- dpkg -i -------------------------------------------------------------------------------------------
step "dpkg -i both packages"
# The docker group as the engine's socket has it, so that the agent's membership opens the socket.
cx groupadd --system --gid "$socket_gid" docker || fail "groupadd docker"
cx mkdir -p /tmp/debs
docker cp "$hub_deb" "$container:/tmp/debs/" >/dev/null
docker cp "$agent_deb" "$container:/tmp/debs/" >/dev/null
cx sh -c 'dpkg -i /tmp/debs/*.deb' >"$TMP/dpkg.log" 2>&1 || { cat "$TMP/dpkg.log"; fail "dpkg -i"; }
grep -q 'enroll.token' "$TMP/dpkg.log" || { cat "$TMP/dpkg.log"; fail "the agent's postinst does not say how to finish the set-up"; }
for pkg in fleetgate-hub fleetgate-agent; do
  [ "$(cx dpkg-query -W -f='${db:Status-Status}' "$pkg")" = installed ] || fail "$pkg is not installed"
done
for f in /usr/bin/fleetgate-hub /usr/bin/fleetgate-agent; do cx test -x "$f" || fail "$f missing"; done
for f in /lib/systemd/system/fleetgate-hub.service /lib/systemd/system/fleetgate-agent.service \
    /etc/fleetgate/hub.toml /etc/fleetgate/agent.toml \
    /usr/share/man/man1/fleetgate-hub.1.gz /usr/share/man/man1/fleetgate-agent.1.gz \
    /usr/share/doc/fleetgate-hub/copyright /usr/share/doc/fleetgate-agent/copyright; do
  cx test -s "$f" || fail "$f missing"
done
cx dpkg-query -W -f='${Conffiles}\n' fleetgate-agent | grep -q '/etc/fleetgate/agent.toml' || fail "agent.toml is not a conffile"
cx dpkg-query -W -f='${Conffiles}\n' fleetgate-hub | grep -q '/etc/fleetgate/hub.toml' || fail "hub.toml is not a conffile"
# Both binaries run with the container's libraries (the Depends: dpkg-shlibdeps found).
cx fleetgate-hub --version | grep -q '^fleetgate-hub ' || fail "fleetgate-hub --version"
cx fleetgate-agent --version | grep -q '^fleetgate-agent ' || fail "fleetgate-agent --version"
# systemd-analyze verify prints problems and may still exit 0: any output is one.
cx systemd-analyze verify --man=no fleetgate-hub.service fleetgate-agent.service >"$TMP/verify.log" 2>&1 \
  || { cat "$TMP/verify.log"; fail "systemd-analyze verify"; }
[ ! -s "$TMP/verify.log" ] || { cat "$TMP/verify.log"; fail "systemd-analyze verify reports problems"; }
ok "both installed: binaries, units (verified), conffiles, man pages, copyright"

step "the agent's system user"
passwd_line=$(cx getent passwd fleetgate-agent) || fail "no user fleetgate-agent"
agent_uid=$(cut -d: -f3 <<<"$passwd_line")
[ "$agent_uid" -lt 1000 ] || fail "fleetgate-agent is not a system user: $passwd_line"
[ "$(cut -d: -f7 <<<"$passwd_line")" = /usr/sbin/nologin ] || fail "fleetgate-agent has a login shell: $passwd_line"
cx id -nG fleetgate-agent | grep -qw docker || fail "fleetgate-agent is not in the docker group"
ok "fleetgate-agent: uid $agent_uid, no shell, groups: $(cx id -nG fleetgate-agent)"

step "fleetgate-hub: running as a dynamic user with its state directory"
[ "$(cx systemctl is-active fleetgate-hub)" = active ] || { cx journalctl -u fleetgate-hub --no-pager | tail -20; fail "fleetgate-hub is not active"; }
[ "$(cx systemctl is-enabled fleetgate-hub)" = enabled ] || fail "fleetgate-hub is not enabled"
[ "$(cx systemctl show -p DynamicUser --value fleetgate-hub)" = yes ] || fail "fleetgate-hub runs without DynamicUser"
[ "$(cx systemctl show -p ProtectSystem --value fleetgate-hub)" = strict ] || fail "fleetgate-hub without ProtectSystem=strict"
hub_pid=$(cx systemctl show -p MainPID --value fleetgate-hub)
hub_uid=$(cx awk '/^Uid:/ {print $2}' "/proc/$hub_pid/status")
# systemd allocates dynamic users from 61184-65519.
[ "$hub_uid" -ge 61184 ] && [ "$hub_uid" -le 65519 ] || fail "fleetgate-hub runs as uid $hub_uid, not a dynamic user"
[ "$(cx readlink /var/lib/fleetgate-hub)" = private/fleetgate-hub ] || fail "/var/lib/fleetgate-hub is not the dynamic user's state directory"
wait_for 10 "the hub's generated tokens" cx test -s /var/lib/fleetgate-hub/admin.token || fail "no /var/lib/fleetgate-hub/admin.token"
[ "$(cx stat -c '%u %a' /var/lib/fleetgate-hub/admin.token)" = "$hub_uid 600" ] || fail "admin.token is not the hub's, mode 0600"
wait_for 10 "the packaged hub's /healthz" curl -fsS --max-time 2 "http://$container_ip:8000/healthz" || fail "the packaged hub does not answer on :8000"
packaged_metrics=$(curl -fsS --max-time 5 "http://$container_ip:8000/metrics") || fail "the packaged hub's /metrics"
grep -q '^fleetgate_hub_' <<<"$packaged_metrics" || fail "the packaged hub's /metrics has no fleetgate_hub_ families"
ok "active and enabled as uid $hub_uid (dynamic), tokens in /var/lib/fleetgate-hub, serving :8000"

step "fleetgate-agent: installed, enabled, waiting for its enrollment token"
[ "$(cx systemctl is-enabled fleetgate-agent)" = enabled ] || fail "fleetgate-agent is not enabled"
[ "$(cx systemctl is-active fleetgate-agent)" = inactive ] || fail "fleetgate-agent runs before it is configured"
[ "$(cx systemctl show -p ConditionResult --value fleetgate-agent)" = no ] || fail "fleetgate-agent did not stop at its condition"
ok "inactive until /etc/fleetgate/enroll.token exists (ConditionPathExists)"

step "hardening (systemd-analyze security)"
for unit in fleetgate-hub fleetgate-agent; do
  line=$(cx systemd-analyze security --no-pager "$unit" | grep 'Overall exposure level')
  echo "$line"
  grep -Eq ': [0-9.]+ (SAFE|OK) ' <<<"$line" || fail "$unit: exposure above OK"
done
ok "both units rated SAFE or OK"

step "configuring the agent as the README says; it enrolls with the hub on this machine"
NODE=fg-packages-deb-$id
cxi bash -c 'install -m 0640 -g fleetgate-agent /dev/stdin /etc/fleetgate/enroll.token <<<"$1"' _ "$ENROLL_TOKEN" \
  || fail "writing enroll.token"
cx sed -i -e "s|^hub = .*|hub = \"$HUB_URL\"|" -e "s|^# node = .*|node = \"$NODE\"|" \
  -e 's|^# interval = .*|interval = "2s"|' /etc/fleetgate/agent.toml
cx systemctl start fleetgate-agent || fail "systemctl start fleetgate-agent"
wait_for 30 "node_uname_info from $NODE" node_has "$NODE" '^node_uname_info\{' \
  || { cx journalctl -u fleetgate-agent --no-pager | tail -20; fail "no series from $NODE on $HUB_URL/metrics"; }
[ "$(cx systemctl is-active fleetgate-agent)" = active ] || fail "fleetgate-agent is not active"
agent_pid=$(cx systemctl show -p MainPID --value fleetgate-agent)
[ "$(cx awk '/^Uid:/ {print $2}' "/proc/$agent_pid/status")" = "$agent_uid" ] || fail "the agent does not run as fleetgate-agent"
cx awk '/^Groups:/' "/proc/$agent_pid/status" | grep -qw "$socket_gid" || fail "the agent process is not in the docker group"
# One hub: one token, in the state directory's hubs/<name>/ folder.
token_modes=$(cx sh -c 'stat -c "%U %a" /var/lib/fleetgate-agent/hubs/*/push.token' 2>&1)
[ "$token_modes" = "fleetgate-agent 600" ] \
  || fail "the push token is not one file of the agent's, mode 0600: $token_modes"
ok "$NODE enrolled; the agent runs as fleetgate-agent (groups incl. docker), push token 0600 in /var/lib/fleetgate-agent/hubs/"

step "the hardened unit loses no metric family"
# Families of one collection as root without any sandbox, against what the unit's agent pushed.
cx fleetgate-agent --once --collectors host,containers 2>/dev/null \
  | grep -v '^#' | sed 's/[{ ].*//' | sort -u >"$TMP/families-root.txt"
[ "$(wc -l <"$TMP/families-root.txt")" -gt 50 ] || fail "fleetgate-agent --once as root printed too little"
wait_for 20 "container metrics from $NODE" node_has "$NODE" '^container_last_seen\{' || fail "no container metrics from $NODE"
node_series "$NODE" | sed 's/[{ ].*//' | sort -u >"$TMP/families-unit.txt"
missing=$(comm -23 "$TMP/families-root.txt" "$TMP/families-unit.txt")
[ -z "$missing" ] || fail "families collected as root but not under the unit: $(echo $missing)"
ok "all $(wc -l <"$TMP/families-root.txt") families (host, containers through the docker group) also come from the unit"

step "the hub takes its own admin token from /etc/fleetgate/hub.env"
OWN_TOKEN=own-admin-token-$id-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
cxi bash -c 'install -m 0600 /dev/stdin /etc/fleetgate/hub.env <<<"FLEETGATE_ADMIN_TOKEN=$1"' _ "$OWN_TOKEN"
cx systemctl restart fleetgate-hub || { cx journalctl -u fleetgate-hub --no-pager | tail; fail "restart with hub.env"; }
packaged_nodes() { curl -fsS --max-time 2 -o /dev/null -H "Authorization: Bearer $1" "http://$container_ip:8000/nodes"; }
wait_for 10 "the packaged hub accepting its own admin token" packaged_nodes "$OWN_TOKEN" \
  || fail "the packaged hub does not accept the admin token from hub.env"
generated=$(cx cat /var/lib/fleetgate-hub/admin.token)
packaged_nodes "$generated" && fail "the packaged hub still accepts the generated admin token"
ok "the hub uses FLEETGATE_ADMIN_TOKEN from hub.env (root, 0600) instead of the generated token"

step "reinstalling keeps the edited conffile and restarts the agent"
cx systemctl disable --quiet fleetgate-hub
cx sh -c 'dpkg -i /tmp/debs/*.deb' >"$TMP/dpkg2.log" 2>&1 || { cat "$TMP/dpkg2.log"; fail "dpkg -i again"; }
cx grep -qx "node = \"$NODE\"" /etc/fleetgate/agent.toml || fail "the reinstall replaced the edited agent.toml"
[ "$(cx systemctl is-enabled fleetgate-hub)" = disabled ] || fail "the reinstall enabled the hub the administrator disabled"
agent_active() { [ "$(cx systemctl is-active fleetgate-agent)" = active ]; }
wait_for 10 "fleetgate-agent active again" agent_active || fail "agent not active after the reinstall"
[ "$(cx systemctl show -p MainPID --value fleetgate-agent)" != "$agent_pid" ] || fail "the reinstall did not restart the agent"
cx systemctl enable --quiet fleetgate-hub
ok "agent.toml kept, agent restarted, the administrator's disable of the hub kept"

step "dpkg --purge, the agent first"
cx dpkg --purge fleetgate-agent >"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log"; fail "dpkg --purge fleetgate-agent"; }
for f in /usr/bin/fleetgate-agent /lib/systemd/system/fleetgate-agent.service /etc/fleetgate/agent.toml \
    /etc/fleetgate/enroll.token /var/lib/fleetgate-agent; do
  cx test -e "$f" && fail "$f is still there after the purge"
done
[ "$(cx systemctl is-active fleetgate-agent)" != active ] || fail "the agent still runs after the purge"
cx test -s /etc/fleetgate/hub.toml || fail "purging the agent removed the hub's hub.toml"
cx dpkg --purge fleetgate-hub >>"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log"; fail "dpkg --purge fleetgate-hub"; }
for f in /usr/bin/fleetgate-hub /var/lib/fleetgate-hub /var/lib/private/fleetgate-hub /etc/fleetgate; do
  cx test -e "$f" && fail "$f is still there after purging both packages"
done
curl -fsS --max-time 2 "http://$container_ip:8000/healthz" >/dev/null 2>&1 && fail "the hub still answers after its purge"
ok "the agent's binary, unit, agent.toml, enroll.token and state gone with it (the hub's kept); then the hub's state, hub.env and /etc/fleetgate"

# --- Ansible against the container ----------------------------------------------------------------
export ANSIBLE_HOME="$TMP/ansible-home" ANSIBLE_LOCAL_TEMP="$TMP/ansible-tmp" ANSIBLE_REMOTE_TEMP=/tmp/ansible
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_STDOUT_CALLBACK=default ANSIBLE_PIPELINING=1
cat >"$TMP/inventory" <<EOF
[app_servers]
$container ansible_connection=community.docker.docker ansible_python_interpreter=/usr/bin/python3 ansible_become=false
EOF
ANODE=fg-packages-ansible-$id
cat >"$TMP/vars.json" <<EOF
{"fleetgate_agent_hub_url": "$HUB_URL", "fleetgate_agent_enroll_token": "$ENROLL_TOKEN",
 "fleetgate_agent_admin_token": "$ADMIN_TOKEN", "fleetgate_agent_node": "$ANODE",
 "fleetgate_agent_labels": {"rollout": "packages-test"}, "fleetgate_agent_interval": "2s",
 "fleetgate_agent_collectors": ["host", "containers"], "fleetgate_agent_install_mode": "package",
 "fleetgate_agent_deb_dir": "$dist", "fleetgate_agent_gpu": false,
 "fleetgate_agent_wait_retries": 60, "fleetgate_agent_wait_delay": 1}
EOF
play() {
  local log=$1; shift
  "$venv/bin/ansible-playbook" -i "$TMP/inventory" "$root/ansible/app-side/playbook.yaml" -l "$container" \
    -e "@$TMP/vars.json" "$@" >"$log" 2>&1 || { cat "$log"; return 1; }
  grep -E '^\[(WARNING|DEPRECATION WARNING)\]' "$log" || true
  grep -E "^$container +: " "$log"
}
unchanged() { grep -Eq "^$container +: .*changed=0 +unreachable=0 +failed=0" "$1"; }

step "Ansible binary mode under systemd: the packaged unit file, a drop-in for /usr/local/bin"
BNODE=fg-packages-binary-$id
binary_vars=(-e fleetgate_agent_install_mode=binary -e "fleetgate_agent_node=$BNODE"
             -e "fleetgate_agent_binary_src=$target_dir/release/fleetgate-agent")
play "$TMP/bin1.log" --tags run-agent "${binary_vars[@]}" || fail "binary mode run"
cxi cmp -s /etc/systemd/system/fleetgate-agent.service - <"$root/packaging/systemd/fleetgate-agent.service" \
  || fail "the binary mode's unit is not packaging/systemd/fleetgate-agent.service"
[ "$(cx systemctl show -p ExecStart --value fleetgate-agent | grep -o 'path=[^ ;]*')" = path=/usr/local/bin/fleetgate-agent ] \
  || fail "the binary mode's unit does not run /usr/local/bin/fleetgate-agent"
wait_for 30 "series from $BNODE" node_has "$BNODE" '^node_uname_info\{' || fail "no series from $BNODE"
play "$TMP/bin2.log" --tags stop-agent "${binary_vars[@]}" || fail "binary mode stop"
[ "$(cx systemctl is-active fleetgate-agent)" != active ] || fail "the binary mode's agent still runs after the stop play"
node_gone "$BNODE" || fail "$BNODE's series are still on /metrics after the stop"
ok "binary mode: the packaged unit file plus drop-in; $BNODE up, then stopped and deregistered"

step "Ansible package mode, over the binary mode's install: run (--tags run-agent)"
play "$TMP/run1.log" --tags run-agent || fail "run play"
unchanged "$TMP/run1.log" && fail "the first run changed nothing"
[ "$(cx dpkg-query -W -f='${db:Status-Status}' fleetgate-agent)" = installed ] || fail "the play did not install the package"
[ "$(cx systemctl show -p FragmentPath --value fleetgate-agent)" = /lib/systemd/system/fleetgate-agent.service ] \
  || fail "the unit is not the package's: $(cx systemctl show -p FragmentPath --value fleetgate-agent)"
[ "$(cx systemctl show -p ExecStart --value fleetgate-agent | grep -o 'path=[^ ;]*')" = path=/usr/bin/fleetgate-agent ] \
  || fail "the package mode's unit does not run /usr/bin/fleetgate-agent"
[ "$(cx systemctl is-active fleetgate-agent)" = active ] || fail "fleetgate-agent not active after the play"
[ "$(cx systemctl is-enabled fleetgate-agent)" = enabled ] || fail "fleetgate-agent not enabled after the play"
cx grep -qx 'MemoryMax=128M' /etc/systemd/system/fleetgate-agent.service.d/site.conf || fail "no drop-in from the role"
[ "$(cx systemctl show -p MemoryMax --value fleetgate-agent)" = 134217728 ] || fail "the drop-in's MemoryMax is not in effect"
cx grep -qx "node = \"$ANODE\"" /etc/fleetgate/agent.toml || fail "agent.toml does not name $ANODE"
wait_for 30 "series from $ANODE with its label" node_has "$ANODE" 'rollout="packages-test"' || fail "no series from $ANODE"
wait_for 20 "container metrics from $ANODE" node_has "$ANODE" '^container_last_seen\{' || fail "no container metrics from $ANODE"
ok "the play replaced the binary install with the package, configured and started it; $ANODE is up with host and container series"

step "Ansible package mode: a second run changes nothing"
play "$TMP/run2.log" --tags run-agent || fail "second run"
unchanged "$TMP/run2.log" || fail "the second run reported changes"
ok "second run: changed=0"

step "Ansible package mode: stop (--tags stop-agent) deregisters"
play "$TMP/stop1.log" --tags stop-agent || fail "stop play"
grep -A1 'Deregister the node from the hub' "$TMP/stop1.log" | grep -q '^changed:' || fail "the stop play did not deregister"
[ "$(cx systemctl is-active fleetgate-agent)" != active ] || fail "the agent still runs after the stop play"
[ "$(cx systemctl is-enabled fleetgate-agent)" = disabled ] || fail "the agent is still enabled after the stop play"
node_gone "$ANODE" || fail "$ANODE's series are still on /metrics"
[ "$(node_state "$ANODE")" = removed ] || fail "/nodes shows $ANODE as '$(node_state "$ANODE")', not removed"
ok "stopped and disabled; $ANODE removed, its series gone from /metrics"

step "Ansible package mode: run again re-admits the node"
play "$TMP/run3.log" --tags run-agent || fail "run after stop"
grep -A1 'Re-admit the node removed by an earlier stop' "$TMP/run3.log" | grep -q '^changed:' || fail "the run did not re-admit $ANODE"
[ "$(cx systemctl is-active fleetgate-agent)" = active ] || fail "fleetgate-agent not active after the re-run"
wait_for 30 "series from $ANODE again" node_has "$ANODE" '^node_uname_info\{' || fail "$ANODE's series did not come back"
[ "$(node_state "$ANODE")" = up ] || fail "$ANODE is not up after the re-run"
ok "re-admitted; $ANODE up again with its series"

step "the host's Docker engine is unharmed"
# Every controller the container's systemd uses must be one the host has mounted (see above).
left=$(unmounted_controllers)
[ -z "$left" ] || fail "cgroup controllers in use but not mounted on the host: $(tr '\n' ' ' <<<"$left")"
docker stats --no-stream --format '{{.MemUsage}}' "$container" >"$TMP/stats" 2>&1 \
  || fail "docker stats of the systemd container: $(cat "$TMP/stats")"
grep -q '^0B' "$TMP/stats" && fail "docker stats reads no memory for the systemd container: $(cat "$TMP/stats")"
ok "every cgroup controller is mounted on the host; docker stats reads $(cat "$TMP/stats")"

echo
echo "packages: ${passed} passed, 0 failed ($((SECONDS - started))s)"
