#!/usr/bin/env bash
# One ddnn run on a workstation with mpirun/mpiexec.
#
# Usage (from the repository root):
#
#     jobs/mpirun.sh INPUT.yaml [python -m ddnn options: --out DIR --set KEY=VALUE --resume CKPT ...]
#     DDNN_NP=8 jobs/mpirun.sh inputs/burgers_lbfgs.yaml --out runs/burgers_lbfgs
#     DRY_RUN=1 jobs/mpirun.sh inputs/quickstart.yaml        # print the command, run nothing
#
# DDNN_NP ranks (default: one per GPU when nvidia-smi lists GPUs, else 1); each rank gets
# OMP_NUM_THREADS = cores / ranks unless OMP_NUM_THREADS is set. The launcher and its
# options (DDNN_MPIRUN, DDNN_MPIRUN_EXTRA) and the Python environment come from jobs/site.sh.
# Ctrl-C or SIGTERM makes ddnn checkpoint and stop; continue with --resume DIR/checkpoint.h5.
set -euo pipefail

JOBS_DIR="${DDNN_JOBS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
# shellcheck source=jobs/site.sh
source "$JOBS_DIR/site.sh"
# shellcheck source=jobs/common.sh
source "$JOBS_DIR/common.sh"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "$JOBS_DIR/mpirun.sh" | grep -v '^set -euo' | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
INPUT="$1"
shift

if [[ -z "${DDNN_NP:-}" ]]; then
    DDNN_NP=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        DDNN_NP="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
    fi
    ((DDNN_NP > 0)) || DDNN_NP=1
fi
[[ "$DDNN_NP" =~ ^[1-9][0-9]*$ ]] || ddnn_die "DDNN_NP must be a positive integer, got '$DDNN_NP'"
if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
    CORES="$(nproc 2>/dev/null || echo 1)"
    OMP_NUM_THREADS=$((CORES / DDNN_NP))
    ((OMP_NUM_THREADS > 0)) || OMP_NUM_THREADS=1
fi
export OMP_NUM_THREADS

LAUNCH=()
read -r -a LAUNCH <<<"$DDNN_MPIRUN"
if [[ -n "$DDNN_MPIRUN_EXTRA" ]]; then
    read -r -a EXTRA <<<"$DDNN_MPIRUN_EXTRA"
    LAUNCH+=("${EXTRA[@]}")
fi
CMD=("${LAUNCH[@]}" -n "$DDNN_NP" "$DDNN_PYTHON" -m ddnn "$INPUT" "$@")

if ddnn_dry; then
    echo "# OMP_NUM_THREADS=$OMP_NUM_THREADS"
    ddnn_show "${CMD[@]}"
    exit 0
fi
ddnn_site_software
ddnn_site_environment
exec "${CMD[@]}"
