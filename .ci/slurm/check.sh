#!/usr/bin/env bash
# CI on a real Slurm: a single-node cluster on this machine (munged, slurmctld, slurmd on
# localhost, select/cons_tres, no cgroups), driven through `hora slurm` as a cluster user would:
#
#   a. the tiny rates experiment over a 3-task job array and the dependent merge/metric/plot
#      job: every task and the merge COMPLETED, tables byte-identical to a local `hora run-all`;
#   b1. a task that fails (its shard's run lock is held by this script): the merge job fails,
#      lists the missing jobs and writes no tables; the same submit script run again reruns only
#      the missing jobs and the tables end byte-identical to the local run;
#   b2. a task cancelled midway (`scancel` after its first record, before its second): the same,
#      with a shard that is half done;
#   c. a fine-tuning experiment's shards (assets fetched once before submission): 2 tasks, all
#      COMPLETED, tables present and equal to a local run's.
#
# Installs slurm-wlm and munge from Debian if they are missing (needs root and apt). Everything
# else lives in a fresh temporary folder; the daemons it starts are stopped however it ends.
# A failure prints the Slurm logs and the jobs' output and exits non-zero.
#
# Environment: HORA (the hora binary; default: `cargo build -p lab --bin hora`, then the debug
# binary of the workspace's target directory), SLURM_CI_TIMEOUT (seconds one wait may take,
# default 180), SLURM_CI_KEEP=1 (keep the temporary folder).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
TIMEOUT=${SLURM_CI_TIMEOUT:-180}
KEEP=${SLURM_CI_KEEP:-}
START=$SECONDS
say() { printf '[slurm-ci %3ds] %s\n' $((SECONDS - START)) "$*"; }

# Nothing from a surrounding Slurm job may leak into ours (sbatch reads SBATCH_* as options,
# `hora run` reads SLURM_ARRAY_TASK_* as its shard).
while read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(SLURM|SBATCH|SALLOC|SRUN)_' | grep -v '^SLURM_CI_' || true)

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n -E env PATH="$PATH" bash "$0" "$@"
  fi
  echo "slurm-ci: needs root (slurmd starts the jobs; munged and apt too), or passwordless sudo" >&2
  exit 1
fi

# --- Slurm and munge from Debian, if missing --------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt)"
  export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
say "$(slurmctld -V), munge $(munged -V 2>&1 | awk '{print $1}' | sed 's/munge-//')"

# --- the hora binary -------------------------------------------------------------------------
if [ -z "${HORA:-}" ]; then
  cargo build -q -p lab --bin hora
  target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  HORA=$target/debug/hora
fi
[ -x "$HORA" ] || { echo "slurm-ci: no hora binary at $HORA" >&2; exit 1; }
HORA=$(cd "$(dirname "$HORA")" && pwd)/$(basename "$HORA")
EXP=$HERE/experiments

# --- a fresh folder for everything; stop what we started, however we end ---------------------
W=$(mktemp -d "${TMPDIR:-/tmp}/hora-slurm-ci.XXXXXX")
chmod 755 "$W" # munged wants its socket's folders searchable by all
mkdir -p "$W"/{etc,state,spool,run,log,out,res} "$W/munge/run" "$W/munge/etc"
chmod 755 "$W/munge" "$W/munge/run"
chmod 700 "$W/munge/etc"
MUNGED_PID='' CTLD_PID='' SLURMD_PID='' LOCK_FD='' DUMPED=''
NODE=$(hostname -s)
export SLURM_CONF=$W/etc/slurm.conf

# The jobs write their .out files to the submit directory (the repository root); the check's
# experiments are named slurm-*, so these are ours: keep them with the logs.
collect_outs() {
  local f
  for f in "$ROOT"/hora-slurm-*.out; do
    [ -e "$f" ] && mv -f "$f" "$W/out/"
  done
  return 0
}

dump_logs() {
  [ -n "$DUMPED" ] && return 0
  DUMPED=1
  collect_outs
  echo "================ slurm-ci: logs ================"
  if [ -n "$CTLD_PID" ]; then
    echo "--- sinfo -R"; sinfo -R 2>&1 || true
    echo "--- squeue"; squeue -o '%i %j %T %r' 2>&1 || true
    echo "--- scontrol show job"; scontrol -o show job 2>&1 | cut -c1-600 || true
  fi
  local f
  for f in "$W"/log/* "$W"/out/*; do
    [ -f "$f" ] || continue
    echo "--- $f"
    tail -n 150 "$f"
  done
  echo "================================================"
}

fail() {
  echo "slurm-ci: FAILED: $*" >&2
  dump_logs
  exit 1
}

stop_pid() { # pid: TERM, up to 10 s, then KILL; reap it
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ "$rc" -ne 0 ] && dump_logs
  [ -n "$LOCK_FD" ] && eval "exec $LOCK_FD>&-"
  if [ -n "$CTLD_PID" ] && [ -n "$SLURMD_PID" ]; then
    # Our private controller only knows our jobs: cancel whatever is left, let it end.
    scancel --quiet --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 50); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_pid "$SLURMD_PID"
  stop_pid "$CTLD_PID"
  stop_pid "$MUNGED_PID"
  collect_outs
  if [ "$rc" -eq 0 ] && [ "$KEEP" != 1 ]; then
    rm -rf "$W"
  else
    echo "slurm-ci: state, logs and job output kept in $W" >&2
  fi
  say "daemons stopped; exit $rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- munged: a private key and socket, so a system munged (if any) is left alone -------------
dd if=/dev/urandom of="$W/munge/etc/munge.key" bs=1024 count=1 status=none
chmod 400 "$W/munge/etc/munge.key"
SOCKET=$W/munge/run/munge.socket.2
munged -F --socket="$SOCKET" --key-file="$W/munge/etc/munge.key" \
  --pid-file="$W/munge/run/munged.pid" --log-file="$W/log/munged.log" \
  --seed-file="$W/munge/etc/munged.seed" >"$W/log/munged.out" 2>&1 &
MUNGED_PID=$!
for _ in $(seq 1 50); do [ -S "$SOCKET" ] && break; sleep 0.1; done
munge -S "$SOCKET" -n | unmunge -S "$SOCKET" >/dev/null || fail "munged does not answer"

# --- slurm.conf from the committed template ---------------------------------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
CTLD_PORT=6817
while ! port_free "$CTLD_PORT" || ! port_free $((CTLD_PORT + 1)); do
  CTLD_PORT=$((CTLD_PORT + 2))
  [ "$CTLD_PORT" -lt 6900 ] || fail "no free pair of ports in 6817-6899"
done
MEMORY=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
CPUS=$(nproc)
sed -e "s|@NODE@|$NODE|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEMORY@|$MEMORY|g" \
  -e "s|@DIR@|$W|g" -e "s|@USER@|$(id -un)|g" -e "s|@MUNGE_SOCKET@|$SOCKET|g" \
  -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$((CTLD_PORT + 1))|g" \
  "$HERE/slurm.conf.in" >"$SLURM_CONF"
mkdir -p "$W/spool/$NODE"
! grep -n '@[A-Z_]*@' "$SLURM_CONF" || fail "a placeholder of slurm.conf.in was not filled"

# --- slurmctld, then slurmd; wait until the node is idle (bounded) ----------------------------
slurmctld -D -i -f "$SLURM_CONF" >"$W/log/slurmctld.out" 2>&1 &
CTLD_PID=$!
for _ in $(seq 1 100); do
  scontrol ping 2>/dev/null | grep -q 'is UP' && break
  kill -0 "$CTLD_PID" 2>/dev/null || fail "slurmctld exited"
  sleep 0.2
done
scontrol ping | grep -q 'is UP' || fail "slurmctld does not answer"
slurmd -D -N "$NODE" -f "$SLURM_CONF" >"$W/log/slurmd.out" 2>&1 &
SLURMD_PID=$!
state=''
for _ in $(seq 1 150); do
  state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
  [ "$state" = idle ] && break
  kill -0 "$SLURMD_PID" 2>/dev/null || fail "slurmd exited"
  sleep 0.2
done
[ "$state" = idle ] || fail "node $NODE is '$state', not idle, after 30 s"
say "single-node Slurm up: node $NODE, $CPUS CPUs, ${MEMORY} MiB, ports $CTLD_PORT/$((CTLD_PORT + 1)), state in $W"

# --- helpers -----------------------------------------------------------------------------------
TERMINAL='^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)$'
job_state() { scontrol -o show job "$1" 2>/dev/null | sed -n 's/.* JobState=\([^ ]*\).*/\1/p' | head -n 1; }

# Wait (bounded) until job $1 has ended; its state in $STATE.
wait_job() {
  local deadline=$((SECONDS + TIMEOUT))
  while :; do
    STATE=$(job_state "$1")
    [[ "$STATE" =~ $TERMINAL ]] && return 0
    [ "$SECONDS" -lt "$deadline" ] || fail "job $1 is still '${STATE:-unknown}' after ${TIMEOUT}s"
    sleep 0.5
  done
}

# "task state" lines of array $1, by task.
task_states() {
  scontrol -o show job "$1" | awk '{
    t = ""; s = ""
    for (i = 1; i <= NF; i++) {
      if ($i ~ /^ArrayTaskId=/) t = substr($i, 13)
      if ($i ~ /^JobState=/) s = substr($i, 10)
    }
    print t, s }' | sort -n
}

# Array $1 of $2 tasks: every task in the state given for it ($3: "0=COMPLETED 1=FAILED ...",
# tasks not named must be COMPLETED).
expect_tasks() {
  local array=$1 n=$2 want=" ${3:-} " got t s w
  got=$(task_states "$array")
  [ "$(wc -l <<<"$got")" -eq "$n" ] || fail "array $array: expected $n tasks, scontrol shows: $got"
  while read -r t s; do
    w=COMPLETED
    [[ "$want" =~ \ $t=([A-Z_]+)\  ]] && w=${BASH_REMATCH[1]}
    [ "$s" = "$w" ] || fail "array $array task $t is $s, expected $w"
  done <<<"$got"
}

expect_merge() { # merge id, state, exit code
  local code
  wait_job "$1"
  collect_outs
  code=$(scontrol -o show job "$1" | sed -n 's/.* ExitCode=\([^ ]*\).*/\1/p')
  [ "$STATE" = "$2" ] && [ "$code" = "$3" ] \
    || fail "merge job $1 ended $STATE (exit $code), expected $2 (exit $3)"
}

# Run a submit script; the ids it prints in ARRAY and MERGE.
submit() {
  local out
  out=$(bash "$1") || fail "submit script $1 failed: $out"
  ARRAY=$(awk '$1 == "array" {print $2}' <<<"$out")
  MERGE=$(awk '$1 == "merge" {print $2}' <<<"$out")
  [[ "$ARRAY" =~ ^[0-9]+$ && "$MERGE" =~ ^[0-9]+$ ]] || fail "submit script $1 printed: $out"
}

# The submit script of experiment $1 into results folder $2, further `hora slurm` options after.
slurm_script() {
  local exp=$1 res=$2
  shift 2
  "$HORA" slurm "$exp" --experiments "$EXP" --results "$res" "$@" >"$W/submit-$exp-$(basename "$res").sh" \
    2>>"$W/log/hora-slurm.err" || fail "hora slurm $exp failed"
  SCRIPT=$W/submit-$exp-$(basename "$res").sh
}

local_run() { # experiment: a local `hora run-all` into $W/local
  "$HORA" run-all "$1" --experiments "$EXP" --results "$W/local" >"$W/log/local-$1.log" 2>&1 \
    || fail "local hora run-all $1 failed (log: $W/log/local-$1.log)"
}

same_tables() { # experiment, results folder, tables...
  local exp=$1 res=$2 t
  shift 2
  for t in "$@"; do
    [ -f "$res/$exp/quick/$t" ] || fail "$exp: $t missing in $res"
    cmp "$res/$exp/quick/$t" "$W/local/$exp/quick/$t" \
      || fail "$exp: $t differs from the local run's"
  done
}

no_tables() { # experiment, results folder
  local t
  for t in metrics.csv curves.csv rates.csv summary.md voronoi.png; do
    [ ! -e "$2/$1/quick/$t" ] || fail "$1: the failed merge left $t behind"
  done
}

records() { find "$1" -maxdepth 1 -name '*.json' | wc -l; }
snapshot() { find "$1" -maxdepth 1 -name '*.json' -printf '%f %i %T@\n' | sort; }

# The merge job's .out must list exactly $2 missing jobs (and, if given, only ids of $3).
expect_missing() {
  local out=$W/out/hora-$EXPNAME-merge-$1.out listed
  collect_outs
  [ -f "$out" ] || fail "no output of merge job $1"
  listed=$(grep -c '^missing ' "$out" || true)
  [ "$listed" -eq "$2" ] || fail "merge job $1 lists $listed missing jobs, expected $2"
  if [ -n "${3:-}" ]; then
    for id in $(awk '$1 == "missing" {print $2}' "$out"); do
      grep -qx "$id" <<<"$3" || fail "merge job $1 lists $id, a job of another shard"
    done
  fi
}

TABLES=(metrics.csv curves.csv rates.csv)

# --- a. the tiny experiment: array + merge COMPLETED, tables identical to a local run ---------
EXPNAME=slurm-tiny
local_run slurm-tiny
JOBS=$(records "$W/local/slurm-tiny/raw")
say "a. local run-all slurm-tiny: $JOBS jobs"
RES=$W/res/a
slurm_script slurm-tiny "$RES" --tasks 3 --cpus-per-task 1 --time 00:05:00 \
  --partition ci --mem 500M --sbatch-arg=--comment=hora-ci
submit "$SCRIPT"
expect_merge "$MERGE" COMPLETED 0:0
expect_tasks "$ARRAY" 3
same_tables slurm-tiny "$RES" "${TABLES[@]}"
# The options reached Slurm: --mem on the array, the pass-through and the partition on both.
for job in "$ARRAY" "$MERGE"; do
  scontrol -o show job "$job" | grep -v ' Comment=hora-ci ' | grep . \
    && fail "job $job lacks --sbatch-arg=--comment=hora-ci"
  scontrol -o show job "$job" | grep -v ' Partition=ci ' | grep . && fail "job $job is not in partition ci"
done
scontrol -o show job "$ARRAY" | grep -v ' MinMemoryNode=500M ' | grep . && fail "array $ARRAY lacks --mem 500M"
say "a. array $ARRAY (3 tasks) and merge $MERGE COMPLETED; ${TABLES[*]} identical to the local run"

# --- b1. a failing task: the merge fails and lists the missing; resubmission reruns them -----
RES=$W/res/b1
slurm_script slurm-tiny "$RES" --tasks 3 --cpus-per-task 1 --time 00:05:00
mkdir -p "$RES/slurm-tiny"
exec {LOCK_FD}>"$RES/slurm-tiny/.hora-run-1-of-3.lock"
flock -n "$LOCK_FD" || fail "cannot take the run lock of shard 1/3"
submit "$SCRIPT"
expect_merge "$MERGE" FAILED 1:0
expect_tasks "$ARRAY" 3 "1=FAILED"
grep -q 'already running' "$W/out/hora-slurm-tiny-${ARRAY}_1.out" \
  || fail "task 1 failed, but not on the held run lock"
before=$(records "$RES/slurm-tiny/raw")
[ "$before" -gt 0 ] && [ "$before" -lt "$JOBS" ] || fail "b1: $before of $JOBS records after the failed task"
expect_missing "$MERGE" $((JOBS - before))
no_tables slurm-tiny "$RES"
say "b1. task 1 FAILED (run lock held), merge $MERGE FAILED listing $((JOBS - before)) missing jobs, no tables"
eval "exec $LOCK_FD>&-"
LOCK_FD=''
snapshot "$RES/slurm-tiny/raw" >"$W/b1.before"
submit "$SCRIPT"
expect_merge "$MERGE" COMPLETED 0:0
expect_tasks "$ARRAY" 3
after=$(records "$RES/slurm-tiny/raw")
[ "$after" -eq "$JOBS" ] || fail "b1: $after of $JOBS records after the resubmission"
[ -z "$(comm -23 "$W/b1.before" <(snapshot "$RES/slurm-tiny/raw"))" ] \
  || fail "b1: the resubmission rewrote records that existed"
same_tables slurm-tiny "$RES" "${TABLES[@]}"
say "b1. resubmitted: $((after - before)) jobs ran ($before records untouched), tables identical to the local run"

# --- b2. a task cancelled midway: the same, with a half-done shard ----------------------------
EXPNAME=slurm-slow
local_run slurm-slow
JOBS=$(records "$W/local/slurm-slow/raw")
RES=$W/res/b2
SHARD1=$("$HORA" run slurm-slow --experiments "$EXP" --results "$RES" --shard 1/2 --dry-run 2>&1 \
  | awk 'length($1) == 16 && $1 ~ /^[0-9a-f]+$/ {print $1}')
[ "$(wc -l <<<"$SHARD1")" -eq 2 ] || fail "b2: expected 2 jobs in shard 1/2, got: $SHARD1"
slurm_script slurm-slow "$RES" --tasks 2 --cpus-per-task 1 --time 00:05:00
submit "$SCRIPT"
deadline=$((SECONDS + TIMEOUT))
while :; do
  done1=0
  for id in $SHARD1; do [ -f "$RES/slurm-slow/raw/$id.json" ] && done1=$((done1 + 1)); done
  [ "$done1" -ge 1 ] && break
  [ "$SECONDS" -lt "$deadline" ] || fail "b2: no record of shard 1 after ${TIMEOUT}s"
  sleep 0.05
done
[ "$(job_state "${ARRAY}_1")" = RUNNING ] && [ "$done1" -lt 2 ] \
  || fail "b2: task 1 ended before it could be cancelled (make slurm-slow's large n slower)"
scancel "${ARRAY}_1"
say "b2. cancelled task ${ARRAY}_1 while running, after $done1 of its 2 records"
expect_merge "$MERGE" FAILED 1:0
expect_tasks "$ARRAY" 2 "1=CANCELLED"
before=$(records "$RES/slurm-slow/raw")
[ "$before" -eq $((JOBS - 1)) ] || fail "b2: $before of $JOBS records after the cancelled task"
expect_missing "$MERGE" 1 "$SHARD1"
no_tables slurm-slow "$RES"
say "b2. merge $MERGE FAILED listing the 1 missing job, no tables"
snapshot "$RES/slurm-slow/raw" >"$W/b2.before"
submit "$SCRIPT"
expect_merge "$MERGE" COMPLETED 0:0
expect_tasks "$ARRAY" 2
after=$(records "$RES/slurm-slow/raw")
[ "$after" -eq "$JOBS" ] || fail "b2: $after of $JOBS records after the resubmission"
[ -z "$(comm -23 "$W/b2.before" <(snapshot "$RES/slurm-slow/raw"))" ] \
  || fail "b2: the resubmission rewrote records that existed"
same_tables slurm-slow "$RES" "${TABLES[@]}"
say "b2. resubmitted: $((after - before)) job ran ($before records untouched), tables identical to the local run"

# --- c. a fine-tuning experiment's shards -----------------------------------------------------
EXPNAME=slurm-finetune
"$HORA" assets fetch >"$W/log/assets.log" 2>&1 || fail "hora assets fetch failed: $(cat "$W/log/assets.log")"
say "c. $(tail -n 1 "$W/log/assets.log")"
local_run slurm-finetune
RES=$W/res/c
slurm_script slurm-finetune "$RES" --tasks 2 --cpus-per-task 1 --time 00:10:00
submit "$SCRIPT"
expect_merge "$MERGE" COMPLETED 0:0
expect_tasks "$ARRAY" 2
[ -f "$RES/slurm-finetune/quick/timing.csv" ] || fail "slurm-finetune: timing.csv missing"
same_tables slurm-finetune "$RES" metrics.csv accuracy.csv
say "c. finetune array $ARRAY (2 tasks) and merge $MERGE COMPLETED; metrics.csv, accuracy.csv identical to the local run"

collect_outs
say "all Slurm checks passed"
