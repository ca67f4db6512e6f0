#!/bin/sh
# STYLE.md habit 6: banned functions. Prints offenders and fails.
set -e
cd "$(dirname "$0")/.."
pat='(^|[^a-z_])(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|system|popen)[[:space:]]*\('
if grep -nE "$pat" core/*.c cache/*.c fs/*.c backends/*.c tests/fuzz/*.c 2>/dev/null | grep -vE '(snprintf|vsnprintf)\(' ; then
	echo "lint: banned function used (see STYLE.md)" >&2
	exit 1
fi
echo "lint: ok"
