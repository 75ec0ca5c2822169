#!/usr/bin/env bash
# Run the README's "Quick start" as written, in a fresh venv, from a fresh clone, and time it.
#
#   scripts/quickstart_check.sh              # run it (needs the network, or pip's local wheels)
#   scripts/quickstart_check.sh --print      # only print the commands it would run, one a line
#
# The commands are read from README.md, not copied here, so this follows the README:
#   * the quick start is the first code block of the "## Quick start" section;
#   * its set-up line (`pip install -e .`) would pull PyPI's multi-GB CUDA torch on Linux, so it is
#     replaced by the section's own CPU set-up block (the one with `pip install torch==...`), which
#     the README documents for CPU-only machines and which ends with that same `pip install -e .`.
# Each command then runs, as written, in the clone's root with the venv activated. The README says
# the analyse command's verdict is FAIL (a vanishing gradient) with exit code 1: a `gradcheck`
# command must exit 1 and print vanishing_gradient, every other command must exit 0.
#
# It prints the elapsed time of each phase (venv, clone, each command) and the total. pip's cache
# is a fresh, empty folder too (a new user has none); the machine's pip configuration (an index
# mirror, local wheels) applies as it would to that user.
#
# Environment: PYTHON (default python3) makes the venv; REPO (default: this checkout) is cloned, so
# committed files are what runs; KEEP=1 keeps the temporary folder. Exit codes: 0 the quick start
# ran as the README says, 1 a command failed or printed something else, 2 the README's blocks are
# not where this script looks.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
readme=$here/README.md

# The commands, one a line: comments after '#' and blank lines dropped.
commands=$(python3 - "$readme" <<'EOF'
import re, sys

text = open(sys.argv[1], encoding="utf-8").read()
start = text.find("\n## Quick start")
if start < 0:
    sys.exit("README.md has no '## Quick start' section")
end = text.find("\n## ", start + 1)
section = text[start:end if end >= 0 else len(text)]
blocks = [[line.split("#")[0].strip() for line in block.splitlines()]
          for block in re.findall(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)]
blocks = [[line for line in block if line] for block in blocks]
if not blocks:
    sys.exit("the Quick start section has no code block")
quick = blocks[0]
cpu = next((b for b in blocks if any(line.startswith("pip install torch") for line in b)), None)
setup = [i for i, line in enumerate(quick) if line.startswith("pip install")]
if cpu is None or len(setup) != 1 or cpu[-1] != quick[setup[0]]:
    sys.exit("expected one `pip install` line in the quick start and a CPU block (`pip install torch...`) "
             "ending with that same line")
print("\n".join(quick[:setup[0]] + cpu + quick[setup[0] + 1:]))
EOF
) || exit 2

if [[ ${1:-} == --print ]]; then
    printf '%s\n' "$commands"
    exit 0
fi
if [[ $# -ne 0 ]]; then
    echo "usage: $0 [--print]" >&2
    exit 2
fi

tmp=$(mktemp -d)
if [[ ${KEEP:-0} == 1 ]]; then echo "keeping $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
export PIP_CACHE_DIR=$tmp/pip-cache

now() { date +%s.%N; }
report=()
phase() {  # phase NAME START: record and print the time since START
    local took
    took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):7.1f}')" "$2" "$(now)")
    report+=("$took s  $1")
    echo "--- $took s  $1"
}

total=$(now)
t=$(now)
"${PYTHON:-python3}" -m venv "$tmp/venv"
phase "python -m venv (fresh venv)" "$t"

t=$(now)
git clone --quiet "${REPO:-$here}" "$tmp/gradcheck"
phase "git clone" "$t"

cd "$tmp/gradcheck"
# shellcheck disable=SC1091
source "$tmp/venv/bin/activate"
status=0
while IFS= read -r command; do
    echo "\$ $command"
    t=$(now)
    code=0
    bash -c "$command" >"$tmp/out" 2>&1 || code=$?
    phase "$command" "$t"
    if [[ $command == gradcheck\ * ]]; then
        tail -n 25 "$tmp/out"
        if [[ $code -ne 1 ]] || ! grep -q vanishing_gradient "$tmp/out"; then
            echo "FAIL: expected exit code 1 and a vanishing_gradient finding (the README's verdict), got $code" >&2
            status=1
        fi
    else
        tail -n 3 "$tmp/out"
        if [[ $code -ne 0 ]]; then
            tail -n 30 "$tmp/out" >&2
            echo "FAIL: exit code $code" >&2
            status=1
            break
        fi
    fi
done <<<"$commands"
phase "total" "$total"

echo
echo "Quick start from a fresh venv ($(python -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo 'torch not installed'), $(nproc) cores):"
printf '  %s\n' "${report[@]}"
if [[ $status -eq 0 ]]; then echo "OK: the README quick start runs as written"; fi
exit $status
