#!/usr/bin/env bash
# Multi-process training on one machine: N processes of train.py on 127.0.0.1, each with DEVICES CPU
# devices, talking through JAX's CPU collectives (gloo) — what a pod or a cluster does, on a laptop.
#
#   DEVICES=4 bash scripts/launch_local.sh 2 --config configs/gaussian.py:smoke --workdir runs/two
#   PROGRAM=evaluate.py DEVICES=4 bash scripts/launch_local.sh 2 --restorer runs/two ... --out results/two
#
# Every process gets the same arguments plus the cluster settings (coordinator 127.0.0.1 on a free port,
# num_processes N, process_id i): train.py's config fields (--config.train.distributed=True, ...), or for
# PROGRAM=evaluate.py its flags (--distributed, --coordinator_address, ...). Process 0 writes to the terminal
# (metrics, checkpoints and the progress bar are process 0's); process i > 0 to LOGDIR/process_i.log
# (LOGDIR: a fresh temporary folder unless set). The script waits for all of them; if one fails, it stops
# the others and exits with that process's status. PYTHON picks the interpreter (default: python).
# docs/multihost.md has the recipes for cloud TPU and SLURM.
set -u
if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  echo "launch_local.sh needs bash 5.1 or later (wait -n -p); this is bash $BASH_VERSION." >&2
  exit 2
fi
if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: DEVICES=M bash scripts/launch_local.sh N train.py-arguments... (N ≥ 1 processes)" >&2
  exit 2
fi
N=$1; shift
DEVICES=${DEVICES:-1}
if [[ ! $DEVICES =~ ^[1-9][0-9]*$ ]]; then
  echo "DEVICES=$DEVICES: the CPU devices per process must be a positive integer." >&2
  exit 2
fi
PYTHON=${PYTHON:-python}
PROGRAM=${PROGRAM:-train.py}
case $PROGRAM in
  train.py) FIELD=--config.train. ;;
  evaluate.py) FIELD=-- ;;
  *) echo "PROGRAM=$PROGRAM: launch_local.sh runs train.py or evaluate.py." >&2; exit 2 ;;
esac
TRAIN="$(cd "$(dirname "$0")/.." && pwd)/$PROGRAM"
LOGDIR=${LOGDIR:-$(mktemp -d -t launch_local.XXXXXX)}
mkdir -p "$LOGDIR"
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
  || { echo "launch_local: $PYTHON could not find a free port on 127.0.0.1." >&2; exit 2; }
export JAX_PLATFORMS=cpu
# This script's device count, replacing any in the caller's XLA_FLAGS.
XLA_FLAGS=$(sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g' <<< "${XLA_FLAGS:-}")
export XLA_FLAGS="$XLA_FLAGS --xla_force_host_platform_device_count=$DEVICES"
CLUSTER=("${FIELD}distributed=True" "${FIELD}coordinator_address=127.0.0.1:$PORT" "${FIELD}num_processes=$N")

# SIGINT/SIGTERM to this script: passed on as SIGTERM to every process (they save and stop together).
pids=()
stopping=0
trap 'stopping=1; kill -TERM "${pids[@]}" 2>/dev/null' INT TERM
for ((i = 0; i < N; i++)); do
  if ((i == 0)); then
    "$PYTHON" "$TRAIN" "$@" "${CLUSTER[@]}" "${FIELD}process_id=0" &
  else
    "$PYTHON" "$TRAIN" "$@" "${CLUSTER[@]}" "${FIELD}process_id=$i" > "$LOGDIR/process_$i.log" 2>&1 &
  fi
  pids+=($!)
done
((N > 1)) && echo "launch_local: $N processes × $DEVICES CPU devices, coordinator 127.0.0.1:$PORT; logs of processes 1–$((N - 1)) in $LOGDIR" >&2

status=0
remaining=$N
while ((remaining > 0)); do
  done_pid=
  wait -n -p done_pid
  code=$?
  [[ -z $done_pid ]] && continue  # a signal interrupted the wait; no process ended
  remaining=$((remaining - 1))
  if ((code != 0 && status == 0)); then
    for ((i = 0; i < N; i++)); do [[ ${pids[$i]} == "$done_pid" ]] && failed=$i; done
    where="its log: $LOGDIR/process_$failed.log"
    ((failed == 0)) && where='its output is above'
    status=$code
    if ((stopping == 0)); then
      echo "launch_local: process $failed exited with status $code; stopping the others ($where)." >&2
      kill -TERM "${pids[@]}" 2>/dev/null
    fi
  fi
done
exit $status
