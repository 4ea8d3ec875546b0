#!/bin/bash
# Pruning + recovery on the s15m model: one-shot SparseGPT at 50–90%, then recovery training
# at 5% of the model's 1,720,320 training tokens (42 steps × 8 × 256 = 86,016 tokens), with
# the dense parent as teacher (forward KL) and, for comparison, with plain cross-entropy.
set -uo pipefail
S=/work/main/target/debug/slm
M=/work/models/s15m
D=/tmp/qsbig/data
V=/work/models/s15m-val.txt
R=/work/results/recovery
ppl() { $S --threads 2 eval -m "$1" --ppl $V --json | grep -o '"ppl":[0-9.]*' | cut -d: -f2; }
REC="--data $D --hold-masks --set steps=42 --set batch_size=8 --set seq_len=256 --set lr=5e-4 --set min_lr=5e-5 --set warmup_steps=4 --set eval_every=0 --set eval_windows=16 --set checkpoint_every=0"
echo "method,sparsity,one_shot_ppl,recovered_kd_ppl,recovered_ce_ppl" > $R/table.csv
for s in ${SPARSITIES:-0.5 0.6 0.7 0.8 0.9}; do
  $S --threads 2 prune -m $M --method ${METHOD:-sparsegpt} --sparsity $s --calib $D/train.bin --nsamples 128 --seqlen 256 --out $R/p$s > $R/p$s.log 2>&1 || { echo "prune $s failed"; cat $R/p$s.log; continue; }
  a=$(ppl $R/p$s)
  $S --threads 2 train $REC --init $R/p$s --teacher $M --out $R/kd$s > $R/kd$s.log 2>&1 || { echo "kd $s failed"; tail -5 $R/kd$s.log; }
  b=$(ppl $R/kd$s)
  $S --threads 2 train $REC --init $R/p$s --out $R/ce$s > $R/ce$s.log 2>&1 || { echo "ce $s failed"; tail -5 $R/ce$s.log; }
  c=$(ppl $R/ce$s)
  echo "${METHOD:-sparsegpt},$s,$a,$b,$c" | tee -a $R/table.csv
  rm -rf $R/kd$s/checkpoints $R/ce$s/checkpoints
done
# Gradual magnitude pruning (Zhu & Gupta) from the dense model inside the same budget.
for s in 0.5 0.9; do
  $S --threads 2 train --data $D --init $M --teacher $M --out $R/gradual$s --set steps=42 --set batch_size=8 --set seq_len=256 --set lr=5e-4 --set min_lr=5e-5 --set warmup_steps=4 --set eval_every=0 --set eval_windows=16 --set checkpoint_every=0 --set prune_sparsity=$s --set prune_end=32 --set prune_every=4 > $R/gradual$s.log 2>&1 || tail -5 $R/gradual$s.log
  echo "gradual-magnitude,$s,,$(ppl $R/gradual$s)," | tee -a $R/table.csv
  rm -rf $R/gradual$s/checkpoints
done
