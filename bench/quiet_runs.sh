#!/usr/bin/env bash
# The quiet, decisive runs of every stage bench (issue #26), the ones BENCHMARKS.md quotes.
#
# Run on 2 idle cores with nothing else running (load average below 1 for the whole run; every bench prints it
# and marks a loaded run "LOADED: not a result"). Each command is --rounds 3, interleaved (ours, peer, ours,
# peer, ...), sized to take at most ~8 minutes on 2 idle cores (estimates beside each line, scaled from smoke
# runs); OMP_NUM_THREADS=2; the JSON goes to runs/bench/<stage>.json and the log beside it (<stage>.log).
#
#     bash bench/quiet_runs.sh                 # every stage, in the order below (~45 min)
#     bash bench/quiet_runs.sh serve rouge     # some stages
#     bash bench/quiet_runs.sh --dry-run       # print the commands only
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=runs/bench
mkdir -p "$OUT"
DRY=0
STAGES=()
for a in "$@"; do
  if [ "$a" = "--dry-run" ]; then DRY=1; else STAGES+=("$a"); fi
done

want() {  # want STAGE: no stages named = all
  [ ${#STAGES[@]} -eq 0 ] && return 0
  for s in "${STAGES[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

run() {  # run STAGE SCRIPT ARGS...: runs/bench/STAGE.json + STAGE.log (with /usr/bin/time -v: peak RSS, CPU s)
  local stage=$1; shift
  want "$stage" || return 0
  local cmd=(python "$@" --json "$OUT/$stage.json")
  echo "== $stage: OMP_NUM_THREADS=$OMP_NUM_THREADS ${cmd[*]}"
  [ "$DRY" = 1 ] && return 0
  echo "   start $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg)"
  local t0=$SECONDS
  /usr/bin/time -v "${cmd[@]}" > "$OUT/$stage.log" 2>&1
  local rc=$?
  echo "   end   $(date -u +%H:%M:%S) UTC, load $(cut -d' ' -f1-3 /proc/loadavg), $((SECONDS - t0)) s, exit $rc" \
    | tee -a "$OUT/$stage.log"
}

# train: already run by the lead (--rounds 3 --steps 40 --parity-steps 20); not repeated here
# run train bench/bench_train.py --rounds 3 --steps 40 --parity-steps 20                        # ~tens of min
run prepare bench/bench_prepare.py --rounds 3 --n 4000                                          # ~4-5 min
run rouge   bench/bench_rouge.py --rounds 3 --n 20000 --ref-prefix 700 --dup-rate 0.3           # ~6-7 min
run synth   bench/bench_synth.py --rounds 3 --n 8 --max-new-tokens 96                           # ~6-8 min
run serve   bench/bench_serve.py --rounds 3 --threads 2 --clients 32 --requests 1 --lengths 16,32,64 --hf-requests 2  # ~7-10 min
run dpo     bench/bench_dpo.py --rounds 3 --steps 8 --pairs 32 --batch 4 --threads 2            # ~11 min
run eval    bench/bench_eval.py --rounds 3 --no-fast --threads 2 --subjects 2 --mmlu-n 5 --gsm8k-n 4 --bbh-n 1 --max-new-tokens 96  # ~8 min
# rl: if present (bench/bench_rl.py is being written by another helper)
[ -f bench/bench_rl.py ] && run rl bench/bench_rl.py --rounds 3                                 # size: see its --help
# the serve bench's full load (32 clients x 20 requests, lengths to 128; issue #26) is far over 8 minutes with
# FastChat and HF in it (~1 h per round, see bench/README.md); run it once, alone, when there is an hour:
# run serve_full bench/bench_serve.py --rounds 1 --threads 2
exit 0
