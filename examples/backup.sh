#!/bin/sh
# backup.sh MNT DIR [RSYNC_OPTION...] — back up a fleetfs mount into DIR.
#
# Copies every project, backend directory and backend config.yml (with its mtime) from the
# mount MNT into DIR; the mount's .rsync-filter (read by rsync -F) skips the files fleetfs
# generates (README, events, status, the root config.yml). DIR is created if missing. Extra
# options go to rsync, e.g. --delete to drop from DIR what was removed from the mount.
# The backup holds credentials in clear text: keep DIR private (it is created 0700).
# Restore with: restore.sh DIR MNT
set -eu

usage() {
	echo "usage: $(basename "$0") MNT DIR [RSYNC_OPTION...]" >&2
	echo "  back up the fleetfs mount MNT into DIR (rsync -aF MNT/ DIR/)" >&2
	exit 2
}

[ $# -ge 2 ] || usage
case "$1" in -h | --help) usage ;; esac
mnt=${1%/}
dir=${2%/}
shift 2
[ -n "$mnt" ] || mnt=/
[ -n "$dir" ] || dir=/

if [ ! -d "$mnt/projects" ] || [ ! -f "$mnt/.rsync-filter" ]; then
	echo "$(basename "$0"): $mnt does not look like a fleetfs mount (no projects/ or .rsync-filter)" >&2
	exit 1
fi
if [ ! -d "$dir" ]; then
	(umask 077 && mkdir -p "$dir")
fi

exec rsync -aF "$@" "$mnt/" "$dir/"
