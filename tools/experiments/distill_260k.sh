#!/bin/bash
# Issue 5's distillation results (docs/RESULTS.md § Distillation), end to end. Teacher:
# stories260K. Students: ~1/2 (126,384) and ~1/4 (61,984) of its 260,032 parameters, trained
# for 400 steps × 8 × 256 = 819,200 tokens each (seed 7, same initialisation for every loss).
# Real data: the TinyStories train head (98,746 tokens); teacher-written data: 20,000 stories
# from `slm distill generate`. Every student is evaluated on tinystories_valid_head794k.txt
# (256-token windows, the students' context) against the teacher. Jobs run two at a time with
# one thread each; timing.sh-style per-step timings run alone at the end with 2 threads.
# Wall time on the 2-core machine: ~50 min generation + ~60 min training/eval.
set -uo pipefail
S=${SLM:-/work/main/target/debug/slm}
L=${SHARED:-/work/shared/data}/llama2c
M=$L/stories260K.bin
TOK=$L/tok512.bin
T=${SHARED:-/work/shared/data}/tinystories
VALID=$T/tinystories_valid_head794k.txt
R=${OUT:-/work/results/distill}
D=$R/realdata
HALF="--set layers=4 --set dim=48 --set heads=6 --set kv_heads=3 --set hidden=128"
QUARTER="--set layers=4 --set dim=32 --set heads=4 --set kv_heads=2 --set hidden=86"
COMMON="--set seq_len=256 --set batch_size=8 --set steps=400 --set lr=3e-3 --set min_lr=3e-4 --set warmup_steps=20 --set eval_every=100 --set eval_windows=16 --set checkpoint_every=0 --set seed=7"
export S L M TOK VALID R D HALF QUARTER COMMON
mkdir -p $R/runs
[ -d $D ] || $S data prepare $T/tinystories_train_head197k.txt --tokenizer $TOK --out $D --val-fraction 0.02
# Teacher-written data (resumable: rerun the same command after an interruption).
$S --threads 2 distill generate --teacher $M --tokenizer $TOK --n 20000 --max-tokens 256 --out $R/synth.jsonl
[ -d $R/synthdata ] || $S data prepare $R/synth.jsonl --tokenizer $TOK --out $R/synthdata --val-fraction 0.02
for k in 8 32; do
  [ -f $R/k$k.kdc ] || $S --threads 2 distill cache --teacher $M --teacher-tokenizer $TOK --data $D --k $k --seq-len 256 --out $R/k$k.kdc
done

job() {  # name size kind [args...]
  local name=$1 size=$2 kind=$3; shift 3
  local sz; [ "$size" = half ] && sz=$HALF || sz=$QUARTER
  local out=$R/runs/$name
  [ -s $R/runs/$name.eval.json ] && return 0
  rm -rf $out
  case $kind in
    ce)  $S --threads 1 train --data ${DATA:-$D} --set preset=\"260k\" $sz $COMMON --out $out "$@" > $out.log 2>&1 ;;
    online) $S --threads 1 distill train --teacher $M --teacher-tokenizer $TOK --student-preset 260k $sz $COMMON --data $D --out $out "$@" > $out.log 2>&1 ;;
    offline) $S --threads 1 distill train --student-preset 260k $sz $COMMON --data $D --out $out "$@" > $out.log 2>&1 ;;
  esac || { echo "FAILED $name"; tail -3 $out.log; return 1; }
  $S --threads 1 eval -m $out --tokenizer $TOK --ppl $VALID --teacher $M --teacher-tokenizer $TOK --json > $R/runs/$name.eval.json
  rm -rf $out/checkpoints
  echo "$name $(cat $R/runs/$name.eval.json)"
}
export -f job
cat <<JOBS | xargs -P 2 -L 1 bash -c 'if [[ $1 == DATA=* ]]; then export "$1"; shift; fi; job "$@"' _
ce_half half ce
fkl_half half online --loss fkl --kd-weight 0.5
ce_quarter quarter ce
fkl_quarter quarter online --loss fkl --kd-weight 0.5
rkl_half half online --loss rkl --kd-weight 0.5
jsd_half half online --loss jsd:0.5 --kd-weight 0.5
skl_half half online --loss skl:0.1 --kd-weight 0.5
k8_half half offline --cache $R/k8.kdc --kd-weight 0.5
k32_half half offline --cache $R/k32.kdc --kd-weight 0.5
rkl_quarter quarter online --loss rkl --kd-weight 0.5
jsd_quarter quarter online --loss jsd:0.5 --kd-weight 0.5
skl_quarter quarter online --loss skl:0.1 --kd-weight 0.5
k8_quarter quarter offline --cache $R/k8.kdc --kd-weight 0.5
k32_quarter quarter offline --cache $R/k32.kdc --kd-weight 0.5
DATA=$R/synthdata synth_half half ce
hidden_half half online --loss fkl --kd-weight 0.5 --hidden cosine --hidden-weight 1
fkl_w09_half half online --loss fkl --kd-weight 0.9
fkl_t2_half half online --loss fkl --kd-weight 0.5 --temperature 2
fkl_w09_quarter quarter online --loss fkl --kd-weight 0.9
onpolicy_half half online --loss fkl --kd-weight 0.5 --on-policy 0.5
JOBS
# Per-step wall time, alone on the machine, 2 threads, 3 interleaved repetitions.
T=$R/timing; mkdir -p $T
C="--set seq_len=256 --set batch_size=8 --set steps=30 --set eval_every=0 --set eval_windows=1 --set checkpoint_every=0 --set seed=7"
run() { # name args...
  local name=$1; shift
  rm -rf $T/$name; "$@" --out $T/$name > $T/$name.log 2>&1 || { tail -3 $T/$name.log; return; }
  python3 -c "
import json,statistics
e=[json.loads(l)['elapsed'] for l in open('$T/$name/metrics.jsonl') if 'elapsed' in l]
d=[b-a for a,b in zip(e[5:],e[6:])]
print('$name', round(1000*statistics.median(d),1))" >> $T/times.txt
}
: > $T/times.txt
for rep in 1 2 3; do
  run ce $S --threads 2 train --data $D --set preset=\"260k\" $HALF $C
  run fkl $S --threads 2 distill train --teacher $M --teacher-tokenizer $TOK --student-preset 260k $HALF $C --data $D
  run k8 $S --threads 2 distill train --cache $R/k8.kdc --student-preset 260k $HALF $C --data $D
  run k32 $S --threads 2 distill train --cache $R/k32.kdc --student-preset 260k $HALF $C --data $D
  run hidden $S --threads 2 distill train --teacher $M --teacher-tokenizer $TOK --student-preset 260k $HALF $C --data $D --hidden cosine
  run onpolicy $S --threads 2 distill train --teacher $M --teacher-tokenizer $TOK --student-preset 260k $HALF $C --data $D --on-policy 0.5
done
python3 - <<'P'
import collections, os, statistics
t = collections.defaultdict(list)
for l in open(os.environ['R'] + '/timing/times.txt'):
    n, v = l.split(); t[n].append(float(v))
ce = statistics.median(t['ce'])
for n, v in t.items():
    m = statistics.median(v); print(f'{n}: median {m:.1f} ms/step over {v} -> {m/ce:.2f}x CE')
P
