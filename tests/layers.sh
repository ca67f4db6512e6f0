#!/bin/sh
# The layering rule (docs/internals/design.md), checked from the #include lines:
#   fs -> core -> {backends, cache} -> model -> lib
# A file may include its own folder's headers and those of folders below it, never above, and
# backends/ and cache/ never include each other. lib/ includes nothing of ours outside lib/.
# Prints each offending line and fails.
set -e
cd "$(dirname "$0")/.."
rank() {
	case "$1" in
	lib) echo 0 ;; model) echo 1 ;; backends | cache) echo 2 ;; core) echo 3 ;; fs) echo 4 ;;
	*) echo 9 ;;
	esac
}
bad=0
for f in lib/*.[ch] model/*.[ch] core/*.[ch] backends/*.[ch] cache/*.[ch] fs/*.[ch]; do
	[ -e "$f" ] || continue
	from=${f%%/*}
	rf=$(rank "$from")
	for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
		case "$inc" in
		../*/*) to=${inc#../}; to=${to%%/*} ;;
		*/*) echo "$f: #include \"$inc\": name headers of other folders as ../<folder>/<file>"
		     bad=1; continue ;;
		*) continue ;; # its own folder
		esac
		rt=$(rank "$to")
		if [ "$to" = "$from" ]; then
			continue
		elif [ "$rt" -ge "$rf" ]; then
			echo "$f: #include \"$inc\": $from/ may not include $to/ (fs -> core -> {backends, cache} -> model -> lib)"
			bad=1
		fi
	done
done
if [ "$bad" != 0 ]; then
	echo "layers: include against the layering (see the head of tests/layers.sh)" >&2
	exit 1
fi
echo "layers: ok"
