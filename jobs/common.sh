# Functions shared by the job scripts (sourced; nothing site-specific: see site.sh).
#
# DRY_RUN=1 makes every script print the commands it would run (sbatch, srun,
# mpiexec; shell-quoted, one per line) and exit 0 without running anything.

ddnn_die() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

ddnn_dry() {
    [[ "${DRY_RUN:-0}" != "0" && -n "${DRY_RUN:-}" ]]
}

# Print a command on one line, words quoted for the shell where they need it.
ddnn_show() {
    local out="" word
    for word in "$@"; do
        if [[ "$word" =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            out+="$word "
        else
            out+="'${word//\'/\'\\\'\'}' "
        fi
    done
    echo "${out% }"
}

# Run a command, or print it under DRY_RUN=1.
ddnn_launch() {
    if ddnn_dry; then
        ddnn_show "$@"
    else
        "$@"
    fi
}

# The value of --out in the ddnn arguments (--out DIR or --out=DIR), empty if absent.
ddnn_find_out() {
    local out="" previous=""
    for word in "$@"; do
        case "$word" in
            --out=*) out="${word#--out=}" ;;
            *) [[ "$previous" == "--out" ]] && out="$word" ;;
        esac
        previous="$word"
    done
    echo "$out"
}

# ddnn's own default output directory of INPUT: output.dir of the YAML, else runs/<input stem>.
ddnn_default_out() {
    local input="$1" stem dir=""
    stem="$(basename "$input")"
    stem="${stem%.*}"
    if [[ -r "$input" ]]; then
        dir="$("$DDNN_PYTHON" -c 'import sys, yaml
raw = yaml.safe_load(open(sys.argv[1])) or {}
out = raw.get("output") if isinstance(raw, dict) else None
print(out.get("dir") or "" if isinstance(out, dict) else "")' "$input" 2>/dev/null || true)"
    fi
    echo "${dir:-runs/$stem}"
}

# The ddnn arguments without any --resume CHECKPOINT, in the array DDNN_ARGS.
ddnn_without_resume() {
    DDNN_ARGS=()
    local skip=0 word
    for word in "$@"; do
        if ((skip)); then
            skip=0
            continue
        fi
        case "$word" in
            --resume) skip=1 ;;
            --resume=*) ;;
            *) DDNN_ARGS+=("$word") ;;
        esac
    done
}

# stop_reason attribute of a ddnn checkpoint (RUNNING: interrupted, resumable); empty if unreadable.
ddnn_stop_reason() {
    [[ -f "$1" ]] || return 0
    "$DDNN_PYTHON" -c 'import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    value = f.attrs.get("stop_reason", "")
print(value.decode() if isinstance(value, bytes) else value)' "$1" 2>/dev/null || true
}

# Common sbatch options from site.sh, in the array DDNN_SBATCH.
ddnn_sbatch_options() {
    DDNN_SBATCH=(
        "--time=$DDNN_TIME"
        "--gpus-per-task=1"
        "--cpus-per-task=$DDNN_CPUS_PER_TASK"
        "--signal=B:USR1@$DDNN_SIGNAL_LEAD"
    )
    [[ -n "$DDNN_PARTITION" ]] && DDNN_SBATCH+=("--partition=$DDNN_PARTITION")
    [[ -n "$DDNN_ACCOUNT" ]] && DDNN_SBATCH+=("--account=$DDNN_ACCOUNT")
    [[ -n "$DDNN_QOS" ]] && DDNN_SBATCH+=("--qos=$DDNN_QOS")
    [[ -n "$DDNN_CONSTRAINT" ]] && DDNN_SBATCH+=("--constraint=$DDNN_CONSTRAINT")
    if [[ -n "$DDNN_SBATCH_EXTRA" ]]; then
        local extra
        read -r -a extra <<<"$DDNN_SBATCH_EXTRA"
        DDNN_SBATCH+=("${extra[@]}")
    fi
    if ! ddnn_dry; then
        mkdir -p "$DDNN_LOG_DIR"
    fi
    return 0
}

# The srun command line of one ddnn run inside an allocation, in the array DDNN_SRUN.
ddnn_srun_command() {
    DDNN_SRUN=(
        srun
        "--ntasks-per-node=${DDNN_TASKS_PER_NODE:-${SLURM_NTASKS_PER_NODE:-$DDNN_GPUS_PER_NODE}}"
        "--gpus-per-task=1"
        "--cpus-per-task=${SLURM_CPUS_PER_TASK:-$DDNN_CPUS_PER_TASK}"
        "--kill-on-bad-exit=1"
    )
    if [[ -n "$DDNN_SRUN_EXTRA" ]]; then
        local extra
        read -r -a extra <<<"$DDNN_SRUN_EXTRA"
        DDNN_SRUN+=("${extra[@]}")
    fi
    DDNN_SRUN+=("$DDNN_PYTHON" -m ddnn "$@")
}

# Inside an allocation: software, environment, threads and (optionally) the NCCL rendezvous.
ddnn_prepare_allocation() {
    export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-$DDNN_CPUS_PER_TASK}"
    if ddnn_dry; then
        [[ -n "$DDNN_MODULES" ]] && echo "# module load $DDNN_MODULES"
        return 0
    fi
    ddnn_site_software
    ddnn_site_environment
    if [[ "$DDNN_NCCL_WHOLE_JOB" == "1" ]]; then
        MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
        export MASTER_ADDR
        export MASTER_PORT="$DDNN_MASTER_PORT"
    fi
}

# Run a command in the background, forward SIGUSR1/SIGTERM (Slurm's warning) to it as SIGUSR1,
# wait for it to end; its exit code in DDNN_RC. srun forwards the signal to every rank,
# ddnn then checkpoints at the end of its iteration and exits 0.
ddnn_run_forwarding_signals() {
    local pid
    "$@" &
    pid=$!
    # shellcheck disable=SC2064
    trap "echo 'ddnn job: time limit near, asking the run to checkpoint' >&2; kill -USR1 $pid 2>/dev/null || true" USR1 TERM
    DDNN_RC=0
    while true; do
        wait "$pid" && DDNN_RC=0 || DDNN_RC=$?
        kill -0 "$pid" 2>/dev/null || break # wait returned because of the trap: keep waiting
    done
    trap - USR1 TERM
}
