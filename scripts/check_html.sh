#!/usr/bin/env bash
# Open a gradcheck HTML report in headless Chromium and fail if the page logs anything to the
# browser console (a script error, "Uncaught ...") or cannot be rendered to a screenshot.
#
# The report page is meant to carry no scripts at all, so any console line is a defect. This is
# the same check tests/render/test_html_browser.py runs, for people without the test suite:
#
#   gradcheck analyze model.pt --input batch.pt -o report.html
#   scripts/check_html.sh report.html [screenshot.png]
#
# Browser: $CHROME if set, else the first of chromium, chromium-browser, google-chrome,
# google-chrome-stable on PATH. Exit codes: 0 clean, 1 console errors / browser failure / empty
# screenshot, 2 usage error or no browser found. The screenshot is kept only when a path is given.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || ! -f $1 ]]; then
    echo "usage: $0 REPORT.html [SCREENSHOT.png]" >&2
    exit 2
fi
browser=${CHROME:-}
if [[ -z $browser ]]; then
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null; then browser=$name; break; fi
    done
fi
if [[ -z $browser ]]; then
    echo "no chromium/chromium-browser/google-chrome on PATH (or set CHROME=/path/to/browser)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
page=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shot=${2:-$work/screenshot.png}
rm -f "$shot"

# A fresh profile per run: no first-run state, and no clash with a browser already running.
status=0
timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$work/profile" --screenshot="$shot" --window-size=1280,2000 \
    --enable-logging=stderr --v=0 "$page" 2>"$work/log" >/dev/null || status=$?

if [[ $status -ne 0 ]]; then
    echo "FAIL: $browser exited with $status" >&2
    tail -n 20 "$work/log" >&2
    exit 1
fi
if [[ ! -s $shot ]]; then
    echo "FAIL: no screenshot was written" >&2
    exit 1
fi
# With --enable-logging, page console messages appear as 'INFO:CONSOLE:<line>] "..."' (older
# releases: 'CONSOLE(<line>)'), and uncaught exceptions as "Uncaught ...".
if grep -E 'CONSOLE[:(]|Uncaught' "$work/log" >&2; then
    echo "FAIL: the page logged to the browser console (lines above)" >&2
    exit 1
fi
echo "OK: $1 renders in $browser with no console output (screenshot $(wc -c <"$shot") bytes)"
