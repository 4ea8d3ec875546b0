#!/bin/bash
# Issue 16's comparison at equal tokens on SmolLM2-135M-Instruct (docs/RESULTS.md):
# (a) importance-pruned + KD, (b) the same shape with random units + KD, (c) the same shape
# from random initialisation + CE, (d) width only, (e) unstructured Wanda 50% + KD, at ~50%
# and ~70% of the non-embedding parameters; then perplexity, tasks and decode speed.
#
#   tools/structured/compare.sh OUT_DIR [SLM_BINARY]      (STEPS=48 by default: 49k tokens)
#   python3 tools/structured/table.py OUT_DIR --svg docs/img/structured_tokens.svg
#
# About 1.5 hours on 2 cores. Every step is skipped when its output exists (rerun = resume).
set -u
OUT=$1; S=${2:-target/release/slm}; S=$(realpath "$S")
D=$(realpath "${SHARED_DATA:-../shared/data}")
P=$D/models/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$OUT/eval"; cd "$OUT" || exit 1
CAL="--calib $D/calib/c4_demo.jsonl --nsamples 16 --seqlen 512 --score-samples 8"
STEPS=${STEPS:-48}
TRAIN="--set steps=$STEPS --set batch_size=4 --set seq_len=256 --set warmup_steps=4 --set eval_every=12 --set eval_windows=16 --set checkpoint_every=0"
log() { echo "[$(date +%H:%M:%S)] $*"; }
# Held-out text: the first 60 kB of WikiText-2 test, the first 40 kB of TinyStories validation.
[ -f eval/wiki.testhead.raw ] || head -c 60000 $D/wikitext-2-raw/wiki.test.raw > eval/wiki.testhead.raw
[ -f eval/tinystories_valhead.txt ] || head -c 40000 $D/tinystories/tinystories_valid_head794k.txt > eval/tinystories_valhead.txt
# Recovery text (none of it is evaluated on): WikiText-2 validation, Wikipedia and C4 samples, TinyStories train head.
[ -f data/train.bin ] || { log prepare; $S data prepare $D/wikitext-2-raw/wiki.valid.raw $D/calib/wiki_demo.txt $D/calib/c4_demo.jsonl $D/tinystories/tinystories_train_head197k.txt --tokenizer $P --out data --val-fraction 0.02 || exit 1; }
prune() { local out=$1; shift; [ -f $out/slm.json ] || { log prune $out; $S prune -m $P --structured $CAL "$@" -o $out > $out.log 2>&1 || { cat $out.log; exit 1; }; }; }
shape() { python3 -c "import json;s=json.load(open('$1/slm.json'))['shape'];print(f\"--layers {s['layers']} --hidden {s['hidden']} --heads {s['heads']} --kv-heads {s['kv_heads']} --mlp {s['mlp']}\")"; }
prune p50 --target-params 0.5
prune p70 --target-params 0.7
prune p50-random $(shape p50) --importance random
prune p70-random $(shape p70) --importance random
prune p50-other --layers 30 --mlp 512
[ -f wanda50/slm.json ] || { log wanda; $S prune -m $P --method wanda --sparsity 0.5 --calib $D/calib/c4_demo.jsonl --nsamples 16 --seqlen 512 -o wanda50 > wanda50.log 2>&1; }
kd() { [ -f $1-kd/config.json ] || { log distill $1; $S distill train --teacher $P -m $1 --data data --loss fkl --kd-weight 1 $TRAIN --set lr=5e-4 --set min_lr=5e-5 -o $1-kd > $1-kd.log 2>&1; }; }
scratch() { [ -f $1-scratch/config.json ] || { log scratch $1
  sets=$(python3 -c "import json;c=json.load(open('$1/config.json'));print(f\"--set layers={c['num_hidden_layers']} --set dim={c['hidden_size']} --set heads={c['num_attention_heads']} --set kv_heads={c['num_key_value_heads']} --set hidden={c['intermediate_size']} --set context=2048\")")
  $S train --data data $sets $TRAIN --set lr=2e-3 --set min_lr=2e-4 -o $1-scratch > $1-scratch.log 2>&1; }; }
kd p50; kd p50-random; scratch p50; kd p50-other
[ -f wanda50-kd/config.json ] || { log recover wanda50; $S train --data data -m wanda50 --hold-masks --teacher $P $TRAIN --set lr=5e-4 --set min_lr=5e-5 -o wanda50-kd > wanda50-kd.log 2>&1; }
kd p70; kd p70-random; scratch p70
ev() { [ -s eval/$2.json ] && return; log eval $2
  { $S eval -m $1 --ppl eval/wiki.testhead.raw --ctx 512 --json; $S eval -m $1 --ppl eval/tinystories_valhead.txt --ctx 512 --json;
    $S eval -m $1 --tasks arc_easy,winogrande,openbookqa --limit 200 --type q8_0 --json; $S eval -m $1 --tasks copa,boolq --limit 100 --type q8_0 --json; } > eval/$2.json 2> eval/$2.err; }
ev $P parent
for r in p50-kd p50-random-kd p50-scratch p50-other-kd wanda50-kd p70-kd p70-random-kd p70-scratch p50 p70; do ev $r $r; done
log bench
for ty in f32 q8_0; do for m in $P p50-kd p50-other-kd p70-kd wanda50-kd; do
  echo "== $m $ty"; $S bench -m $m --type $ty --reps 3 --json; done; done > bench.jsonl 2> bench.err
log done
