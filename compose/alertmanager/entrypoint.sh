#!/bin/sh
# Starts Alertmanager with alertmanager.yml, its receiver URLs filled in from the environment
# (Alertmanager itself does not expand variables, and the URLs are secrets that stay out of the
# repository):
#   ALERTMANAGER_WEBHOOK_URL   required: the default receiver's webhook (http:// or https://)
#   ALERTMANAGER_WATCHDOG_URL  optional: where the Watchdog heartbeat goes; default the webhook
# Paths, for use outside the container image:
#   ALERTMANAGER_TEMPLATE  (/etc/alertmanager/alertmanager.yml)
#   ALERTMANAGER_RENDERED  (/alertmanager/alertmanager.yml: the data volume, owner-only)
#   ALERTMANAGER_BIN       (/bin/alertmanager)
# Every other argument goes to Alertmanager.
set -eu

template=${ALERTMANAGER_TEMPLATE:-/etc/alertmanager/alertmanager.yml}
rendered=${ALERTMANAGER_RENDERED:-/alertmanager/alertmanager.yml}
binary=${ALERTMANAGER_BIN:-/bin/alertmanager}
ALERTMANAGER_WATCHDOG_URL=${ALERTMANAGER_WATCHDOG_URL:-${ALERTMANAGER_WEBHOOK_URL:-}}
export ALERTMANAGER_WATCHDOG_URL

# The URLs go into single-quoted YAML scalars: refuse what would break out of them. The values
# are never printed (they usually carry a token).
for var in ALERTMANAGER_WEBHOOK_URL ALERTMANAGER_WATCHDOG_URL; do
  eval "value=\${$var:-}"
  case $value in
    http://?* | https://?*) ;;
    *) echo "entrypoint: $var must be an http:// or https:// URL (set it in compose/.env)" >&2
       exit 64 ;;
  esac
  case $value in
    *"'"* | *" "* | *"	"*)
      echo "entrypoint: $var must not contain quotes or whitespace" >&2
      exit 64 ;;
  esac
done

umask 077
# Literal replacement (no regular expressions, so '&' and '\' in a URL stay as they are).
awk '
  function fill(line, key, value,    out, i) {
    out = ""
    while ((i = index(line, key)) > 0) {
      out = out substr(line, 1, i - 1) value
      line = substr(line, i + length(key))
    }
    return out line
  }
  {
    line = fill($0, "${ALERTMANAGER_WEBHOOK_URL}", ENVIRON["ALERTMANAGER_WEBHOOK_URL"])
    print fill(line, "${ALERTMANAGER_WATCHDOG_URL}", ENVIRON["ALERTMANAGER_WATCHDOG_URL"])
  }
' "$template" >"$rendered.tmp"
if grep -q '\${ALERTMANAGER_' "$rendered.tmp"; then
  echo "entrypoint: $template uses a placeholder this script does not fill" >&2
  exit 65
fi
mv "$rendered.tmp" "$rendered"

exec "$binary" --config.file="$rendered" "$@"
