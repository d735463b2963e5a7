#!/usr/bin/env bash
# The seed's sweeps: one input run with several world sizes and seeds, as Slurm array jobs.
#
# Usage (from the repository root, outside an allocation; the script submits itself):
#
#     jobs/sweep_array.sh INPUT.yaml [python -m ddnn options: --set KEY=VALUE ...]
#     DDNN_SWEEP_RANKS="2 4 6" DDNN_SWEEP_SEEDS="0 1 2" jobs/sweep_array.sh inputs/mnist_apts.yaml
#     DRY_RUN=1 jobs/sweep_array.sh inputs/quickstart.yaml   # print every command, run nothing
#
# For each world size P in DDNN_SWEEP_RANKS (default "2 4 6 8") one array job is submitted
# with P ranks (one per GPU, as few nodes as hold them) and one array element per seed in
# DDNN_SWEEP_SEEDS (default "0 1 ... 9"). Element i runs
#
#     srun ... python -m ddnn INPUT.yaml --set run.seed=SEED --out OUT/npP_seedSEED ...
#
# with OUT = DDNN_SWEEP_OUT (default runs/sweep/<input stem>). The sweep can be submitted
# again at any time: finished runs are skipped and interrupted ones resumed from their
# checkpoint. Near the time limit an element checkpoints and resubmits itself (at most
# DDNN_MAX_RESUBMITS times), as jobs/slurm_gpu.sh does. Plot the result with
#
#     python tools/plot_history.py OUT/np4_seed* OUT/np8_seed* --group-seeds -o sweep.pdf
#     python tools/scaling.py OUT/* -o scaling.pdf
#SBATCH --job-name=ddnn-sweep
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
    sed -n '2,/^set -euo/p' "$JOBS_DIR/sweep_array.sh" | grep -v -e '^set -euo' -e '^#SBATCH' | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
INPUT="$1"
shift
STEM="$(basename "$INPUT")"
STEM="${STEM%.*}"
: "${DDNN_SWEEP_RANKS:=2 4 6 8}"
: "${DDNN_SWEEP_SEEDS:=0 1 2 3 4 5 6 7 8 9}"
: "${DDNN_SWEEP_OUT:=runs/sweep/$STEM}"
read -r -a RANKS <<<"$DDNN_SWEEP_RANKS"
read -r -a SEEDS <<<"$DDNN_SWEEP_SEEDS"
((${#RANKS[@]} > 0 && ${#SEEDS[@]} > 0)) || ddnn_die "DDNN_SWEEP_RANKS and DDNN_SWEEP_SEEDS must not be empty"
[[ -z "$(ddnn_find_out "$@")" ]] || ddnn_die "--out is chosen per run (DDNN_SWEEP_OUT/npP_seedS); set DDNN_SWEEP_OUT"
ddnn_without_resume "$@"
ARGS=("${DDNN_ARGS[@]}")

layout() { # NODES and PER_NODE of <ranks>: as few nodes as hold one rank per GPU, evenly filled
    local ranks="$1"
    NODES=$(((ranks + DDNN_GPUS_PER_NODE - 1) / DDNN_GPUS_PER_NODE))
    PER_NODE=$(((ranks + NODES - 1) / NODES))
    ((NODES * PER_NODE == ranks)) || ddnn_die "$ranks ranks do not split evenly over $NODES node(s)"
}

submit() { # submit <ranks> <array indices> <follow-up count>
    layout "$1"
    ddnn_sbatch_options
    export DDNN_JOBS_DIR="$JOBS_DIR" DDNN_SWEEP_SEEDS DDNN_SWEEP_OUT DDNN_GPUS_PER_NODE DDNN_CPUS_PER_TASK
    ddnn_launch sbatch "${DDNN_SBATCH[@]}" \
        "--job-name=ddnn-sweep-$STEM-np$1" \
        "--nodes=$NODES" \
        "--ntasks-per-node=$PER_NODE" \
        "--array=$2" \
        "--output=$DDNN_LOG_DIR/%x-%A_%a.out" \
        "--export=ALL,DDNN_RESUBMIT_COUNT=$3" \
        "$JOBS_DIR/sweep_array.sh" "$INPUT" "${ARGS[@]}"
}

# The ddnn arguments of one element (seed, world size) in ELEMENT_ARGS; "done" runs are skipped.
element() {
    local ranks="$1" seed="$2" out reason
    out="$DDNN_SWEEP_OUT/np${ranks}_seed${seed}"
    ELEMENT_OUT="$out"
    ELEMENT_ARGS=("$INPUT" --set "run.seed=$seed" --out "$out" "${ARGS[@]}")
    reason="$(ddnn_stop_reason "$out/checkpoint.h5")"
    ELEMENT_STATE=new
    if [[ "$reason" == "RUNNING" ]]; then
        ELEMENT_ARGS+=(--resume "$out/checkpoint.h5")
        ELEMENT_STATE=resume
    elif [[ -n "$reason" ]]; then
        ELEMENT_STATE=done
    fi
}

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    LAST=$((${#SEEDS[@]} - 1))
    for ranks in "${RANKS[@]}"; do
        [[ "$ranks" =~ ^[1-9][0-9]*$ ]] || ddnn_die "DDNN_SWEEP_RANKS: '$ranks' is not a number of ranks"
        submit "$ranks" "0-$LAST" 0
        if ddnn_dry; then # what the elements will run
            for seed in "${SEEDS[@]}"; do
                element "$ranks" "$seed"
                DDNN_TASKS_PER_NODE="$PER_NODE" ddnn_srun_command "${ELEMENT_ARGS[@]}"
                echo "# element np$ranks seed $seed ($ELEMENT_STATE): $(ddnn_show "${DDNN_SRUN[@]}")"
            done
        fi
    done
    exit 0
fi

# Inside one array element.
RANKS_HERE="${SLURM_NTASKS:?not in a Slurm job step allocation}"
INDEX="${SLURM_ARRAY_TASK_ID:?not an array job}"
((INDEX < ${#SEEDS[@]})) || ddnn_die "array index $INDEX but only ${#SEEDS[@]} seeds"
SEED="${SEEDS[$INDEX]}"
RESUBMITS="${DDNN_RESUBMIT_COUNT:-0}"
element "$RANKS_HERE" "$SEED"
if [[ "$ELEMENT_STATE" == "done" ]]; then
    echo "ddnn sweep: $ELEMENT_OUT is finished, skipped"
    exit 0
fi
ddnn_prepare_allocation
layout "$RANKS_HERE"
DDNN_TASKS_PER_NODE="${SLURM_NTASKS_PER_NODE:-$PER_NODE}"
ddnn_srun_command "${ELEMENT_ARGS[@]}"
if ddnn_dry; then
    ddnn_show "${DDNN_SRUN[@]}"
    exit 0
fi
echo "ddnn sweep element $SLURM_JOB_ID ($ELEMENT_STATE, follow-up $RESUBMITS): $(ddnn_show "${DDNN_SRUN[@]}")"
ddnn_run_forwarding_signals "${DDNN_SRUN[@]}"
element "$RANKS_HERE" "$SEED"
echo "ddnn sweep element: exit code $DDNN_RC, $ELEMENT_OUT is $ELEMENT_STATE"
if [[ "$DDNN_RC" == 0 && "$ELEMENT_STATE" == "resume" ]]; then
    if ((RESUBMITS >= DDNN_MAX_RESUBMITS)); then
        echo "ddnn sweep: $ELEMENT_OUT unfinished after $RESUBMITS follow-up jobs; submit the sweep again" >&2
        exit 1
    fi
    submit "$RANKS_HERE" "$INDEX" "$((RESUBMITS + 1))"
fi
exit "$DDNN_RC"
