#!/bin/sh
# restore.sh DIR MNT [RSYNC_OPTION...] — restore a backup made by backup.sh onto a fleetfs mount.
#
# Creates the projects and backend directories that are missing on MNT and writes every
# backend config.yml from DIR (rsync -a DIR/ MNT/). fleetfs validates each config.yml as it
# is renamed into place: an invalid one makes rsync report an error for that file (the
# reason is in MNT/projects/<project>/events) and the rest is still restored. Sizes and
# mtimes are kept, so running it again transfers nothing. Extra options go to rsync, e.g.
# --itemize-changes or --dry-run.
#
# The mount's own .rsync-filter is merged in, so the files fleetfs generates are neither
# written (a backup taken with plain `rsync -a` holds copies of them) nor, with --delete,
# deleted. --delete removes the backends that are not in DIR, but not whole projects:
# fleetfs refuses to remove projects/<p>/backends and projects/<p>/events (EPERM), so remove
# a project with `rmdir MNT/projects/<p>` once its backends are gone.
set -eu

usage() {
	echo "usage: $(basename "$0") DIR MNT [RSYNC_OPTION...]" >&2
	echo "  restore the backup DIR onto the fleetfs mount MNT (rsync -a DIR/ MNT/)" >&2
	exit 2
}

[ $# -ge 2 ] || usage
case "$1" in -h | --help) usage ;; esac
dir=${1%/}
mnt=${2%/}
shift 2
[ -n "$dir" ] || dir=/
[ -n "$mnt" ] || mnt=/

if [ ! -d "$dir/projects" ]; then
	echo "$(basename "$0"): $dir is not a fleetfs backup (no projects/ in it)" >&2
	exit 1
fi
if [ ! -d "$mnt/projects" ] || [ ! -f "$mnt/.rsync-filter" ]; then
	echo "$(basename "$0"): $mnt does not look like a fleetfs mount (no projects/ or .rsync-filter)" >&2
	exit 1
fi

exec rsync -a --filter="merge $mnt/.rsync-filter" "$@" "$dir/" "$mnt/"
