#!/bin/bash
# stories260K: one-shot SparseGPT at 50–90% with and without recovery. Recovery data: the
# TinyStories train head (197 kB, ~80k tokens with the model's 512-token vocabulary), one
# pass: 40 steps × 8 × 256 = 81,920 tokens, teacher = the dense model (forward KL).
set -uo pipefail
S=/work/main/target/debug/slm
L=/work/shared/data/llama2c
T=/work/shared/data/tinystories
R=/work/results/rec260k
M=$L/stories260K.bin
mkdir -p $R
$S data prepare $T/tinystories_train_head197k.txt --tokenizer $L/tok512.bin --out $R/data --val-fraction 0.02 > $R/data.log 2>&1 || { cat $R/data.log; exit 1; }
ppl() { $S --threads 2 eval -m "$1" --tokenizer $L/tok512.bin --ppl /tmp/valid200k.txt --json | grep -o '"ppl":[0-9.]*' | cut -d: -f2; }
REC="--data $R/data --hold-masks --set steps=40 --set batch_size=8 --set seq_len=256 --set lr=5e-4 --set min_lr=5e-5 --set warmup_steps=4 --set eval_every=0 --set eval_windows=8 --set checkpoint_every=0"
echo "dense,$(ppl $M)" > $R/table.csv
for s in 0.5 0.6 0.7 0.8 0.9; do
  $S --threads 2 prune -m $M --tokenizer $L/tok512.bin --method sparsegpt --sparsity $s --calib $T/tinystories_train_head197k.txt --nsamples 64 --seqlen 512 --out $R/p$s > $R/p$s.log 2>&1 || { cat $R/p$s.log; continue; }
  a=$(ppl $R/p$s)
  $S --threads 2 train $REC --init $R/p$s --teacher $M --out $R/kd$s > $R/kd$s.log 2>&1 || tail -5 $R/kd$s.log
  b=$(ppl $R/kd$s)
  $S --threads 2 train $REC --init $R/p$s --out $R/ce$s > $R/ce$s.log 2>&1 || tail -5 $R/ce$s.log
  c=$(ppl $R/ce$s)
  echo "sparsegpt,$s,$a,$b,$c" | tee -a $R/table.csv
  rm -rf $R/kd$s/checkpoints $R/ce$s/checkpoints
done
