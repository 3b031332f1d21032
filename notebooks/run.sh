#!/usr/bin/env bash
# CI entry point for the notebooks: executes every notebooks/*.ipynb headless against the
# committed results folders that matter (or the folders given as arguments) and fails when any
# cell fails.
#
#   notebooks/run.sh                      # the default list below
#   notebooks/run.sh results/X /tmp/out   # these results folders or sets instead
#
# Environment: NB_VENV (venv, default /tmp/snapbench-nb-venv), NB_OUT (output, default
# notebooks/out: NB_OUT/<label>/*.png, recommendation.txt and executed/<notebook>.ipynb),
# NB_CELL_TIMEOUT (seconds a cell may take, default 300), PYTHON (default python3); SLO_P99_MS,
# SLO_ON and CPU_BUDGET pass through to the notebooks.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t0=$(date +%s)

venv=${NB_VENV:-/tmp/snapbench-nb-venv}
req=notebooks/requirements.txt
stamp="$venv/.snapbench-requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "== pip install -r $req (into $venv)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  # A kernelspec inside the venv, preferred over any user-level "python3" kernel, so that the
  # notebooks run on the venv's Python.
  "$venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$want" > "$stamp"
fi
echo "== venv ready ($(( $(date +%s) - t0 )) s)"

out_base=${NB_OUT:-notebooks/out}
mkdir -p "$out_base"
out_base=$(cd "$out_base" && pwd)

export MPLBACKEND=Agg
export NOTEBOOK_DIR="$repo/notebooks"
export JUPYTER_PREFER_ENV_PATH=1
export PYDEVD_DISABLE_FILE_VALIDATION=1

# label|RESULTS|extra environment. An empty RESULTS is the newest folder by meta.json's
# start_utc (the notebook's default).
if [ $# -gt 0 ]; then
  targets=()
  for r in "$@"; do
    [ -d "$r" ] || { echo "run.sh: $r: no such folder; give results folders or sets" >&2; exit 2; }
    targets+=("$(basename "$r")|$(cd "$r" && pwd)|")
  done
else
  targets=(
    "newest||"                                                                  # whatever is newest, e.g. the <UTC>-full reference set
    "search-a-w1|results/20261203T145523Z-capacity-quick/a-w1|"                 # one search folder
    "run-default|results/20261202T182820Z-default|"                             # one plain run folder (.hgrm only)
    "run-default-ack|results/20261202T182820Z-default|SLO_ON=ack SLO_P99_MS=1020 CPU_BUDGET=0.45"
    "set-capacity-old|results/20261203T074727Z-capacity-quick|"                 # a set; search.csv without `load`
    "set-harness-cost|results/20261203T142528Z-harness-cost|"                   # a nested set of 45 one-run folders
  )
fi

failed=()
for nb in notebooks/*.ipynb; do
  stem=$(basename "$nb" .ipynb)
  for t in "${targets[@]}"; do
    IFS='|' read -r label results extra <<<"$t"
    out="$out_base/$label"
    mkdir -p "$out/executed"
    rm -f "$out"/*.png "$out"/recommendation.txt "$out/executed/$stem.ipynb"
    s=$(date +%s)
    echo "== $nb, RESULTS=${results:-<newest>} ${extra}"
    # shellcheck disable=SC2086  # $extra is a list of VAR=value words
    if env RESULTS="$results" NB_OUT="$out" $extra \
        "$venv/bin/jupyter" nbconvert --to notebook --execute \
        --ExecutePreprocessor.timeout="${NB_CELL_TIMEOUT:-300}" \
        --output-dir "$out/executed" --output "$stem" "$nb" \
        > "$out/nbconvert.log" 2>&1; then
      echo "   ok ($(( $(date +%s) - s )) s): $(ls "$out"/*.png 2>/dev/null | wc -l) figures in $out"
      sed 's/^/   | /' "$out/recommendation.txt" 2>/dev/null | head -4 || true
    else
      echo "   FAILED ($(( $(date +%s) - s )) s); the end of $out/nbconvert.log:"
      grep -v 'Kernel is running over TCP' "$out/nbconvert.log" | sed 's/\x1b\[[0-9;]*m//g' | tail -25 | sed 's/^/   | /'
      failed+=("$stem on ${results:-<newest>} $extra")
    fi
  done
done

echo "== done in $(( $(date +%s) - t0 )) s"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
