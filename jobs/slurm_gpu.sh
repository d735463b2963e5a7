#!/usr/bin/env bash
# One ddnn run on GPU nodes of a Slurm cluster: one rank per GPU, checkpoint before the
# time limit, resubmit until the run is finished.
#
# Usage (from the repository root, outside an allocation; the script submits itself):
#
#     jobs/slurm_gpu.sh INPUT.yaml [python -m ddnn options: --out DIR --set KEY=VALUE ...]
#     DDNN_NODES=2 DDNN_TIME=12:00:00 jobs/slurm_gpu.sh inputs/burgers.yaml --out runs/burgers_aspqn
#     DRY_RUN=1 jobs/slurm_gpu.sh inputs/burgers.yaml        # print the commands, run nothing
#
# Site settings (partition, account, GPUs per node, modules, Python environment) come from
# jobs/site.sh; every one of them can be overridden from the environment.
#
# What happens:
#   1. outside an allocation: sbatch with --nodes=$DDNN_NODES, --ntasks-per-node=GPUs per node,
#      --gpus-per-task=1, --cpus-per-task, --signal=B:USR1@$DDNN_SIGNAL_LEAD, and this script;
#   2. in the allocation: OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK, then
#      srun ... python -m ddnn INPUT.yaml --out DIR ...
#      $DDNN_SIGNAL_LEAD seconds before the time limit Slurm signals this script, which passes
#      SIGUSR1 on to every rank: ddnn checkpoints and exits 0, leaving stop_reason RUNNING in
#      DIR/checkpoint.h5;
#   3. if the run is unfinished (exit 0 and stop_reason RUNNING) the script submits a follow-up
#      job with --resume DIR/checkpoint.h5 (at most $DDNN_MAX_RESUBMITS times).
# Without --out the run's directory is output.dir of the input, else runs/<input stem>; the
# script always passes it on so that it knows where the checkpoint is.
#
# It can also be given to sbatch directly (sbatch [options] jobs/slurm_gpu.sh INPUT.yaml ...);
# the defaults below apply then, together with your sbatch options.
#SBATCH --job-name=ddnn
#SBATCH --gpus-per-task=1
#SBATCH --signal=B:USR1@120
set -euo pipefail

if [[ -n "${DDNN_JOBS_DIR:-}" ]]; then
    JOBS_DIR="$DDNN_JOBS_DIR"
elif [[ -f "$(dirname "${BASH_SOURCE[0]}")/site.sh" ]]; then
    JOBS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
else # sbatch runs a copy of the script: find jobs/ from the submission directory
    JOBS_DIR="${SLURM_SUBMIT_DIR:-.}/jobs"
fi
# shellcheck source=jobs/site.sh
source "$JOBS_DIR/site.sh"
# shellcheck source=jobs/common.sh
source "$JOBS_DIR/common.sh"

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "$JOBS_DIR/slurm_gpu.sh" | grep -v -e '^set -euo' -e '^#SBATCH' | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
INPUT="$1"
shift
ARGS=("$@")
OUT="$(ddnn_find_out "${ARGS[@]}")"
if [[ -z "$OUT" ]]; then
    OUT="$(ddnn_default_out "$INPUT")"
    ARGS+=(--out "$OUT")
fi
RESUBMITS="${DDNN_RESUBMIT_COUNT:-0}"

submit() { # sbatch this script for INPUT and ARGS (the first job or a follow-up)
    local stem
    stem="$(basename "$INPUT")"
    stem="${stem%.*}"
    ddnn_sbatch_options
    export DDNN_JOBS_DIR="$JOBS_DIR" DDNN_NODES DDNN_GPUS_PER_NODE DDNN_CPUS_PER_TASK
    ddnn_launch sbatch "${DDNN_SBATCH[@]}" \
        "--job-name=ddnn-$stem" \
        "--nodes=$DDNN_NODES" \
        "--ntasks-per-node=$DDNN_GPUS_PER_NODE" \
        "--output=$DDNN_LOG_DIR/%x-%j.out" \
        "--export=ALL,DDNN_RESUBMIT_COUNT=$1" \
        "$JOBS_DIR/slurm_gpu.sh" "$INPUT" "${ARGS[@]}"
}

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    submit "$RESUBMITS"
    if ddnn_dry; then # what the job will run
        ddnn_prepare_allocation
        ddnn_srun_command "$INPUT" "${ARGS[@]}"
        ddnn_show "${DDNN_SRUN[@]}"
    fi
    exit 0
fi

ddnn_prepare_allocation
ddnn_srun_command "$INPUT" "${ARGS[@]}"
if ddnn_dry; then
    ddnn_show "${DDNN_SRUN[@]}"
    exit 0
fi
echo "ddnn job $SLURM_JOB_ID (follow-up $RESUBMITS): $(ddnn_show "${DDNN_SRUN[@]}")"
ddnn_run_forwarding_signals "${DDNN_SRUN[@]}"

CHECKPOINT="$OUT/checkpoint.h5"
REASON="$(ddnn_stop_reason "$CHECKPOINT")"
echo "ddnn job $SLURM_JOB_ID: exit code $DDNN_RC, stop reason ${REASON:-unknown}"
if [[ "$DDNN_RC" == 0 && "$REASON" == "RUNNING" ]]; then
    if ((RESUBMITS >= DDNN_MAX_RESUBMITS)); then
        echo "ddnn job: unfinished, but $RESUBMITS follow-up jobs already ran; resume by hand with --resume $CHECKPOINT" >&2
        exit 1
    fi
    ddnn_without_resume "${ARGS[@]}"
    ARGS=("${DDNN_ARGS[@]}" --resume "$CHECKPOINT")
    DDNN_NODES="${SLURM_JOB_NUM_NODES:-$DDNN_NODES}"
    submit "$((RESUBMITS + 1))"
fi
exit "$DDNN_RC"
