#!/usr/bin/env bash
# Open a gradcheck HTML report in headless Chromium and fail if the page logs anything to the
# browser console (a script error, "Uncaught ...") or cannot be rendered to a screenshot.
#
# The report page is meant to carry no scripts at all, so any console line is a defect. This is
# the same check tests/render/test_html_browser.py runs, for people without the test suite:
#
#   gradcheck analyze model.pt --input batch.pt -o report.html
#   scripts/check_html.sh report.html [screenshot.png]
#   scripts/check_html.sh --roles report.html [screenshot.png]
#
# --roles (a report of repeated blocks, e.g. a 16-block transformer): also load a copy of the page
# with a checking script appended and read the browser's DOM back (--dump-dom): the gradient-flow
# figure (and every other figure drawn per role) must have one drawn line per role named in its
# legend, in the legend's colour, with a non-zero rendered length. It prints one line per figure:
#   ROLES: Gradient flow: 7 roles in the legend, 7 lines (ln_1 16 points, attn.c_attn 16 points, ...)
#
# Browser: $CHROME if set, else the first of chromium, chromium-browser, google-chrome,
# google-chrome-stable on PATH. Exit codes: 0 clean, 1 console errors / browser failure / empty
# screenshot / (--roles) a figure without one line per role, 2 usage error or no browser found. The screenshot is kept only when a path is given.
set -euo pipefail

roles=0
if [[ ${1:-} == --roles ]]; then roles=1; shift; fi
if [[ $# -lt 1 || $# -gt 2 || ! -f $1 ]]; then
    echo "usage: $0 [--roles] REPORT.html [SCREENSHOT.png]" >&2
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

if [[ $roles -eq 1 ]]; then
    # A copy of the page with a script that measures the figures in the rendered DOM and writes
    # the result, as JSON, into a <pre id="gc-roles">; the report itself carries no script. Role
    # lines are matplotlib artists with gid role-<k>, drawn in legend order: the k-th legend entry
    # drawn as a line (marker-only entries, such as the red rings, are not roles) names the k-th.
    python3 - "$page" "$work/roles.html" <<'EOF'
import sys

script = r"""<pre id="gc-roles"></pre><script>
const figures = [];
for (const svg of document.querySelectorAll("svg.gc-plot")) {
  const legend = [];
  const box = svg.querySelector('g[id$="-legend_1"]');
  const kids = box ? [...box.children] : [];
  kids.forEach((g, i) => {
    const sample = /-line2d_\d+$/.test(g.id) ? g.querySelector(":scope > path") : null;
    const text = kids[i + 1] ? kids[i + 1].querySelector("text") : null;
    if (sample && text && getComputedStyle(sample).stroke !== "none")
      legend.push({label: text.textContent, stroke: getComputedStyle(sample).stroke});
  });
  const lines = [...svg.querySelectorAll("g[id]")].filter(g => /-role-\d+$/.test(g.id)).map(g => {
    const path = g.querySelector(":scope > path");
    return path ? {stroke: getComputedStyle(path).stroke, length: path.getTotalLength(),
                   points: (path.getAttribute("d").match(/[ML]/g) || []).length} : {stroke: "none", length: 0, points: 0};
  });
  const rect = svg.getBoundingClientRect();
  figures.push({title: svg.getAttribute("aria-label"), width: rect.width, height: rect.height, legend, lines});
}
document.getElementById("gc-roles").textContent = JSON.stringify(figures);
</script>
"""
text = open(sys.argv[1], encoding="utf-8").read()
at = text.rfind("</body>")
open(sys.argv[2], "w", encoding="utf-8").write(text[:at] + script + text[at:] if at >= 0 else text + script)
EOF
    status=0
    timeout 60 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --user-data-dir="$work/profile" --window-size=1280,2000 --dump-dom "$work/roles.html" \
        >"$work/dom" 2>"$work/log2" || status=$?
    if [[ $status -ne 0 ]]; then
        echo "FAIL: $browser --dump-dom exited with $status" >&2
        tail -n 20 "$work/log2" >&2
        exit 1
    fi
    python3 - "$work/dom" <<'EOF' || exit 1
import html, json, re, sys

found = re.search(r'<pre id="gc-roles">(.*?)</pre>', open(sys.argv[1], encoding="utf-8").read(), re.S)
if not found or not found.group(1).strip():
    sys.exit("FAIL: the checking script wrote nothing (the browser did not run it)")
figures = json.loads(html.unescape(found.group(1)))
bad = []
for figure in figures:
    legend, lines = figure["legend"], figure["lines"]
    if not lines:
        print(f"ROLES: {figure['title']}: no per-role lines ({figure['width']:.0f}x{figure['height']:.0f} px)")
        continue
    drawn = ", ".join(f"{entry['label']} {line['points']} points" for entry, line in zip(legend, lines))
    print(f"ROLES: {figure['title']}: {len(legend)} roles in the legend, {len(lines)} lines ({drawn})")
    if figure["width"] <= 0 or figure["height"] <= 0:
        bad.append(f"{figure['title']}: the figure has no rendered size")
    if len(lines) != len(legend) or len({entry["label"] for entry in legend}) != len(legend):
        bad.append(f"{figure['title']}: {len(lines)} lines for {len(legend)} legend roles")
    for entry, line in zip(legend, lines):
        if line["stroke"] != entry["stroke"] or line["length"] <= 0 or line["points"] < 2:
            bad.append(f"{figure['title']}: the line of {entry['label']} is {line} (legend: {entry['stroke']})")
if not any(f["title"] == "Gradient flow" and f["lines"] for f in figures):
    bad.append("the gradient-flow figure draws no per-role lines")
for line in bad:
    print(f"FAIL: {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
fi
echo "OK: $1 renders in $browser with no console output (screenshot $(wc -c <"$shot") bytes)"
