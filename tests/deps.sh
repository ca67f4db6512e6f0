#!/bin/sh
# Install what fleetfs needs to build and test, on Debian 12. Idempotent.
set -e
PKGS="build-essential pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev libyaml-dev libcjson-dev
libssl-dev libssh2-1-dev liblmdb-dev libinih-dev libxml2-dev lmdb-utils libcsv-dev libzip-dev check python3-pytest python3-yaml python3-boto3 rsync ansible
clang libclang-rt-14-dev
vim-nox nano tar coreutils sed openssh-client openssh-server iproute2 psmisc"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# Node tooling of the tests (tests/npm: Stoplight Prism for tests/integration/test_spec_replay.py),
# installed from its lock file; again only when missing or when the lock file changed.
NPMDIR="$(cd "$(dirname "$0")" && pwd)/npm"
if ! command -v npm >/dev/null 2>&1; then
	SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	if command -v node >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
	else
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm
	fi
fi
if [ ! -x "$NPMDIR/node_modules/.bin/prism" ] ||
	! cmp -s "$NPMDIR/package-lock.json" "$NPMDIR/node_modules/.fleetfs-lock.json"; then
	(cd "$NPMDIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
	cp "$NPMDIR/package-lock.json" "$NPMDIR/node_modules/.fleetfs-lock.json"
fi
