#!/bin/sh
# Banned functions (unbounded copies and formats, atoi, system, popen): prints offenders
# and fails. Use the fmt/buf helpers of lib/util.h and the num_parse wrappers instead.
set -e
cd "$(dirname "$0")/.."
pat='(^|[^a-z_])(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|system|popen)[[:space:]]*\('
if grep -nE "$pat" lib/*.c model/*.c core/*.c cache/*.c fs/*.c backends/*.c tests/fuzz/*.c 2>/dev/null | grep -vE '(snprintf|vsnprintf)\(' ; then
	echo "lint: banned function used (see the head of tests/lint.sh)" >&2
	exit 1
fi
echo "lint: ok"
sh tests/layers.sh
