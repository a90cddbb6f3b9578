#!/usr/bin/env bash
# Installs the third-party WebSocket clients of the interop suite
# (test/interop/*_test.go) when they are missing, and does nothing else when
# they are all present: `make test` runs it every time.
#
#   Debian packages: chromium (driven by playwright-core), python3-websockets,
#                    python3-autobahn, python3-twisted, the reverse
#                    proxies of proxies_test.go: nginx-light, haproxy, and
#                    prometheus for promtool (status_test.go checks a scrape)
#   npm (package-lock.json in this folder): ws@8, playwright-core
#
# The Python clients run under /usr/bin/python3: the python3 first on PATH may
# be another build that cannot import Debian's packages.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
apt_packages=(chromium python3-websockets python3-autobahn python3-twisted nginx-light haproxy prometheus)

log() { printf 'deps.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

# Root runs apt-get directly; anyone else needs sudo.
sudo_cmd=()
need_root() {
	if [ "$(id -u)" -eq 0 ]; then
		sudo_cmd=()
	elif command -v sudo >/dev/null 2>&1; then
		sudo_cmd=(sudo)
	else
		die "not root and no sudo: cannot install $*"
	fi
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# --- Debian packages -------------------------------------------------------
missing=()
for p in "${apt_packages[@]}"; do
	installed "$p" || missing+=("$p")
done
[ -x /usr/bin/chromium ] || [[ " ${missing[*]-} " == *" chromium "* ]] || missing+=(chromium)
[ -x /usr/sbin/nginx ] || [[ " ${missing[*]-} " == *" nginx-light "* ]] || missing+=(nginx-light)
[ -x /usr/sbin/haproxy ] || [[ " ${missing[*]-} " == *" haproxy "* ]] || missing+=(haproxy)
[ -x /usr/bin/promtool ] || [[ " ${missing[*]-} " == *" prometheus "* ]] || missing+=(prometheus)
if ! /usr/bin/python3 -c 'import websockets, autobahn, twisted' >/dev/null 2>&1; then
	for p in python3-websockets python3-autobahn python3-twisted; do
		[[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
	done
fi

if [ "${#missing[@]}" -gt 0 ]; then
	command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get (install them by hand)"
	need_root "${missing[*]}"
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]}" apt-get update
	# All at once: a partial set is cheap to complete in one call. A
	# package's service that cannot start here (no systemd) is no error:
	# the tests run nginx and haproxy as their own processes.
	"${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${apt_packages[@]}"
fi

[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after install"
for b in /usr/sbin/nginx /usr/sbin/haproxy /usr/bin/promtool; do
	[ -x "$b" ] || die "$b still missing after install"
done
/usr/bin/python3 -c 'import websockets, autobahn, twisted' ||
	die "/usr/bin/python3 cannot import websockets, autobahn and twisted after install"

# --- npm packages ----------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found (node 20 is expected on the machine)"
command -v npm >/dev/null 2>&1 || die "npm not found (it comes with node)"

# npm writes node_modules/.package-lock.json on every install: older than
# package-lock.json (or absent) means the tree is stale.
stamp="$here/node_modules/.package-lock.json"
if [ ! -d "$here/node_modules" ] || [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
	log "npm ci in $here"
	# No browser downloads: chromium comes from Debian.
	(cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
	touch "$stamp"
fi
