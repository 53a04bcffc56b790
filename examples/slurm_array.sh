#!/usr/bin/env bash
# Optimise every recording of a folder with a Slurm job array: each array task takes its own
# shard of the inputs (--shard slurm reads SLURM_ARRAY_TASK_ID / _MIN / _COUNT), all tasks write
# into one output folder on a shared file system, and a last job merges the shards' summaries.
#
#   job=$(sbatch --parsable examples/slurm_array.sh /data/recordings /scratch/$USER/dstft_runs)
#   sbatch --dependency=afterany:$job --wrap "dstft summary /scratch/$USER/dstft_runs"
#
# The second job merges OUT/summary.K-of-N.csv into OUT/summary.csv once every task has ended
# (rows of results whose part is missing are rebuilt from their params.json).
# A task that is cancelled or killed resumes when resubmitted: finished results are skipped,
# its stale temporary folders removed. Resubmit one task with `sbatch --array=3 ...`.
#SBATCH --job-name=dstft
#SBATCH --array=0-15
#SBATCH --cpus-per-task=2
#SBATCH --time=02:00:00
#SBATCH --output=dstft-%A_%a.log
set -euo pipefail

DATA=${1:?usage: sbatch examples/slurm_array.sh DATA_DIR OUT_DIR}
OUT=${2:?usage: sbatch examples/slurm_array.sh DATA_DIR OUT_DIR}

# every task must see the same input list: same arguments, same working directory
cd "${SLURM_SUBMIT_DIR:-.}"
srun dstft optimize "$DATA" --mode constant --shard slurm --jobs "${SLURM_CPUS_PER_TASK:-1}" \
    --no-plots -o "$OUT"
