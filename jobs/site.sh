# Site settings of the ddnn job scripts: the ONE file to edit for a new cluster.
#
# Sourced by jobs/slurm_gpu.sh, jobs/sweep_array.sh and jobs/mpirun.sh. Every
# value is a default: a variable already set in the environment wins, e.g.
#
#     DDNN_PARTITION=debug DDNN_TIME=00:30:00 jobs/slurm_gpu.sh inputs/burgers.yaml
#
# The scripts themselves only launch `python -m ddnn INPUT.yaml ...`.

# --- Slurm allocation ------------------------------------------------------
: "${DDNN_PARTITION:=}"            # --partition (empty: the cluster's default partition)
: "${DDNN_ACCOUNT:=}"              # --account (empty: your default account)
: "${DDNN_QOS:=}"                  # --qos (empty: none)
: "${DDNN_CONSTRAINT:=}"           # --constraint, e.g. "gpu&a100" (empty: none)
: "${DDNN_GPUS_PER_NODE:=4}"       # GPUs per node = ranks per node (one rank per GPU)
: "${DDNN_CPUS_PER_TASK:=8}"       # CPU cores per rank; OMP_NUM_THREADS follows it
: "${DDNN_NODES:=1}"               # nodes of a slurm_gpu.sh job (ranks = nodes x GPUs per node)
: "${DDNN_TIME:=04:00:00}"         # time limit of one job; unfinished runs resubmit themselves
: "${DDNN_SIGNAL_LEAD:=120}"       # seconds before the time limit at which ddnn is told to checkpoint
: "${DDNN_MAX_RESUBMITS:=20}"      # stop resubmitting after this many follow-up jobs
: "${DDNN_SBATCH_EXTRA:=}"         # more sbatch options, e.g. "--mem=0 --exclusive"
: "${DDNN_SRUN_EXTRA:=}"           # more srun options, e.g. "--mpi=pmix --gpu-bind=closest"
: "${DDNN_LOG_DIR:=logs}"          # Slurm's stdout/stderr files (created when submitting)

# --- software ----------------------------------------------------------------
: "${DDNN_MODULES:=}"              # modules to load, e.g. "gcc/12 openmpi/4.1 cuda/12.1" (empty: none)
: "${DDNN_ACTIVATE:=}"             # a virtual environment's bin/activate to source (empty: none)
: "${DDNN_CONDA_ENV:=}"            # or a conda environment to activate (empty: none)
: "${DDNN_PYTHON:=python}"         # the interpreter that has ddnn installed

# --- workstation (jobs/mpirun.sh) --------------------------------------------
: "${DDNN_MPIRUN:=mpiexec}"        # MPI launcher: mpiexec, mpirun, ...
: "${DDNN_MPIRUN_EXTRA:=}"         # more launcher options, e.g. "--bind-to none" (Open MPI)

# --- communication ---------------------------------------------------------
# ddnn reduces CUDA tensors with NCCL inside a node and MPI across nodes.
# DDNN_NCCL_WHOLE_JOB=1 exports MASTER_ADDR/MASTER_PORT so that one NCCL group
# spans every node instead (worth it on clusters with InfiniBand/RoCE NCCL).
: "${DDNN_NCCL_WHOLE_JOB:=0}"
: "${DDNN_MASTER_PORT:=29500}"

# Environment of every rank: called inside the allocation, before launching.
ddnn_site_environment() {
    export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
    export TORCH_NCCL_ASYNC_ERROR_HANDLING="${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}"  # a failed rank ends the job
    # export NCCL_SOCKET_IFNAME=ib0          # the network interface NCCL should use
    # export NCCL_IB_HCA=mlx5                 # the InfiniBand adapters
    # export FI_PROVIDER=cxi                  # libfabric provider on HPE Slingshot
    # export MPICH_GPU_SUPPORT_ENABLED=0      # ddnn passes host buffers to MPI
    export PYTHONUNBUFFERED=1                 # progress lines reach the log at once
}

# Modules and the Python environment: called before anything runs Python.
ddnn_site_software() {
    if [[ -n "$DDNN_MODULES" ]]; then
        module purge
        # shellcheck disable=SC2086
        module load $DDNN_MODULES
    fi
    if [[ -n "$DDNN_ACTIVATE" ]]; then
        # shellcheck disable=SC1090
        source "$DDNN_ACTIVATE"
    fi
    if [[ -n "$DDNN_CONDA_ENV" ]]; then
        conda activate "$DDNN_CONDA_ENV"
    fi
}
