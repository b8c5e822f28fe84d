#!/usr/bin/env bash
# Runs this task's share of a poisonscope sweep grid: one shard of N, N = the number of array
# tasks (Slurm job array) or completions (Kubernetes Indexed Job). Every shard writes into the
# same shared folder OUT; cells are claimed, so a task restarted or run twice never runs a
# cell a second time. When all shards have ended, `poisonscope sweep GRID --out OUT
# --tables-only` merges the tables (each shard also rewrites them after each of its cells).
#
# Environment:
#   GRID, OUT           the grid file and the shared output folder (required)
#   POISONSCOPE         the binary (default: poisonscope on PATH)
#   Slurm:              SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN, SLURM_ARRAY_TASK_COUNT (set
#                       by sbatch --array; any start index, e.g. --array=1-8)
#   Kubernetes:         JOB_COMPLETION_INDEX (set for an Indexed Job), SHARDS (= completions)
#   Elsewhere:          SHARD_INDEX and SHARDS (default 0 and 1: the whole grid)
set -euo pipefail
: "${GRID:?set GRID to the grid file}"
: "${OUT:?set OUT to the shared output folder}"
bin="${POISONSCOPE:-poisonscope}"

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
    index=$(( SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0} ))
    count="${SLURM_ARRAY_TASK_COUNT:?SLURM_ARRAY_TASK_COUNT is not set: run this as an sbatch --array task}"
elif [[ -n "${JOB_COMPLETION_INDEX:-}" ]]; then
    index="$JOB_COMPLETION_INDEX"
    count="${SHARDS:?set SHARDS to the number of completions of the Job}"
else
    index="${SHARD_INDEX:-0}"
    count="${SHARDS:-1}"
fi

exec "$bin" sweep "$GRID" --out "$OUT" --shard "$index/$count"
