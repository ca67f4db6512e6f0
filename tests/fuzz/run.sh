#!/bin/sh
# Run each fuzz target for SECONDS, one at a time (-jobs=1: the machine is shared), on a
# copy of its seed corpus, and print executions and crashes per target.
#   tests/fuzz/run.sh BUILD_FUZZ_DIR SECONDS TARGET...
# FUZZ_SEED=N fixes libFuzzer's seed (the smoke run in CI: the same inputs each time, so a
# new finding comes from a change, not from luck; `make fuzz` explores with a random seed).
# Crashing inputs land in BUILD_FUZZ_DIR/crashes/<target>/; logs in BUILD_FUZZ_DIR/logs/.
# Exit status 1 when any target crashed (or did not run), else 0.
set -u
cd "$(dirname "$0")/../.."
dir=$1
secs=$2
shift 2
mkdir -p "$dir/corpus" "$dir/crashes" "$dir/logs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
status=0
summary=""
total=0
for t in "$@"; do
	corpus="$dir/corpus/$t"
	rm -rf "$corpus"
	mkdir -p "$corpus" "$dir/crashes/$t"
	[ -d "tests/fuzz/corpus/$t" ] && cp -R "tests/fuzz/corpus/$t/." "$corpus/"
	dict=""
	[ -f "tests/fuzz/dict/$t.dict" ] && dict="-dict=tests/fuzz/dict/$t.dict"
	log="$dir/logs/$t.log"
	echo "  FUZZ    $t (${secs}s)"
	# shellcheck disable=SC2086
	"$dir/$t" -max_total_time="$secs" ${FUZZ_SEED:+-seed="$FUZZ_SEED"} -timeout=20 -rss_limit_mb=2560 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$dir/crashes/$t/" $dict "$corpus" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	execs=${execs:-0}
	crashes=$(find "$dir/crashes/$t" -type f | wc -l)
	if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
		status=1
		echo "  FAIL    $t: exit $rc, $crashes crashing input(s) in $dir/crashes/$t (log: $log)"
		grep -m 3 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/          /'
	fi
	total=$((total + execs))
	summary="$summary$(printf '%-20s %12s %8s' "$t" "$execs" "$crashes")
"
done
printf '\n%-20s %12s %8s\n' target executions crashes
printf '%s' "$summary"
printf '%-20s %12s\n' total "$total"
exit $status
