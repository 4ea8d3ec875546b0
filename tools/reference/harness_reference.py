#!/usr/bin/env python3
"""lm-evaluation-harness's task protocol, re-implemented with transformers, as the reference
for `slm eval --tasks` (issue 14 part 3).

Written from lm-eval 0.4.9's task YAMLs and `lm_eval/api/{task,model,samplers,metrics}.py`
and `lm_eval/models/huggingface.py` (HFLM), on the files under `../shared/data/eval` (the
harness itself cannot run here: it downloads its datasets). What it reproduces:

- prompts (`doc_to_text`), choices (`doc_to_choice`), target delimiter " ", few-shot
  contexts: `random.Random(1234)` shared by the docs of one task in order, `rnd.sample(pool, k)`
  (k + 1 and the doc itself removed when the pool is the evaluated file), fewshot delimiter
  "\\n\\n", mmlu's description and `first_n` sampler over its dev split;
- HFLM loglikelihood: no BOS (`add_bos_token=False`), `_encode_pair` (trailing spaces of the
  context move to the continuation; whole = context + continuation encoded once, split at the
  context's token count), one forward of (context + continuation)[:-1], log_softmax, the
  continuation's log-probs summed, greedy = every continuation token is the argmax;
- gsm8k: greedy generation until "Question:", "</s>", "<|im_end|>" (256 new tokens at most),
  strict-match and flexible-extract filters.

Model and tokenizer: the GGUF loaded by transformers (`gguf_file=`, dequantised to float32).
Scoring is batch 1, as HFLM's default, with `torch.set_num_threads(2)`; the seconds each task
takes are written beside its fixture for the speed comparison with `slm eval`.

    tools/reference/.venv/bin/python tools/reference/harness_reference.py            # fixtures
    tools/reference/.venv/bin/python tools/reference/harness_reference.py --arc-easy-dev   # full ARC-Easy dev accuracy

Outputs under tools/reference/fixtures_eval/: `<task>.json` (a few docs per task: contexts,
continuations, their token ids, log-likelihoods, greedy flags, predictions) and
`arc_easy_dev_full.json`.
"""

import argparse
import csv
import json
import math
import random
import re
import sys
import time
from pathlib import Path

DATA = Path("../shared/data/eval")
MODEL = Path("../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = Path("tools/reference/fixtures_eval")


def jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- data: our files in the shape of the harness's HF datasets -------------------------------


def arc(name):
    def load(split):
        rows = jsonl(DATA / "arc" / f"{name}-{split}.jsonl")
        return [
            {
                "question": r["question"]["stem"],
                "choices": {
                    "text": [c["text"] for c in r["question"]["choices"]],
                    "label": [c["label"] for c in r["question"]["choices"]],
                },
                "answerKey": r["answerKey"],
            }
            for r in rows
        ]

    return load


def obqa(split):
    rows = []
    with open(DATA / "openbookqa" / f"{split}.tsv", encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            s, labels = r["Choices"], ["A", "B", "C", "D"]
            marks = [s.index("(A) ")]
            for lab in labels[1:]:
                marks.append(s.index(f" ({lab}) ", marks[-1]))
            ends = marks[1:] + [len(s)]
            text = [s[m:e].lstrip()[4:] for m, e in zip(marks, ends)]
            rows.append(
                {
                    "question_stem": r["Question Stem"],
                    "choices": {"text": text, "label": labels},
                    "answerKey": r["Answer Key"],
                }
            )
    return rows


def mmlu_subjects():
    return sorted(p.name[: -len("_test.csv")] for p in (DATA / "mmlu" / "test").glob("*_test.csv"))


def mmlu(subject, split):
    with open(DATA / "mmlu" / split / f"{subject}_{split}.csv", encoding="utf-8", newline="") as f:
        return [
            {"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5].strip())}
            for r in csv.reader(f)
        ]


# ---- tasks -----------------------------------------------------------------------------------


def mc(text, choices, gold, acc_norm=True):
    return {"text": text, "choices": choices, "gold": gold, "acc_norm": acc_norm}


def copa_choice(c):
    return c[0].lower() + c[1:]


TASKS = {
    "arc_easy": dict(
        docs=lambda: arc("ARC-Easy")("Test"),
        pool=lambda: arc("ARC-Easy")("Dev"),
        same=False,
        doc=lambda d: mc(
            f"Question: {d['question']}\nAnswer:",
            d["choices"]["text"],
            d["choices"]["label"].index(d["answerKey"]),
        ),
    ),
    "arc_challenge": dict(
        docs=lambda: arc("ARC-Challenge")("Test"),
        pool=lambda: arc("ARC-Challenge")("Dev"),
        same=False,
        doc=lambda d: mc(
            f"Question: {d['question']}\nAnswer:",
            d["choices"]["text"],
            d["choices"]["label"].index(d["answerKey"]),
        ),
    ),
    "boolq": dict(
        docs=lambda: jsonl(DATA / "boolq" / "val.jsonl"),
        pool=None,
        same=True,
        doc=lambda d: mc(
            f"{d['passage']}\nQuestion: {d['question']}?\nAnswer:",
            ["no", "yes"],
            int(d["label"] in (True, 1, "true")),  # SuperGLUE's JSONL: "true"/"false"
            False,
        ),
    ),
    "copa": dict(
        docs=lambda: jsonl(DATA / "copa" / "val.jsonl"),
        pool=None,
        same=True,
        doc=lambda d: mc(
            d["premise"].strip()[:-1] + " " + {"cause": "because", "effect": "therefore"}[d["question"]],
            [" " + copa_choice(d["choice1"]), " " + copa_choice(d["choice2"])],
            d["label"],
            False,
        ),
    ),
    "openbookqa": dict(
        docs=lambda: obqa("test"),
        pool=lambda: obqa("dev"),
        same=False,
        doc=lambda d: mc(
            d["question_stem"], d["choices"]["text"], d["choices"]["label"].index(d["answerKey"].lstrip())
        ),
    ),
}


def winogrande_doc(d):
    idx = d["sentence"].index("_")
    return {
        "contexts": [d["sentence"][:idx] + o for o in (d["option1"], d["option2"])],
        "target": d["sentence"][idx + 1 :].strip(),
        "gold": {"1": 0, "2": 1}[d["answer"]],
    }


# ---- few-shot --------------------------------------------------------------------------------


def fewshot_prefix(rnd, pool, same, i, k, example_text):
    """The harness's ContextSampler.get_context with the random sampler."""
    if k == 0:
        return ""
    n = k + 1 if same else k
    picked = rnd.sample(range(len(pool)), n)
    picked = [j for j in picked if not (same and j == i)][:k]
    return "".join(example_text(pool[j]) + "\n\n" for j in picked)


# ---- scoring (HFLM) --------------------------------------------------------------------------


class Scorer:
    def __init__(self, threads=2):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(MODEL.parent), gguf_file=MODEL.name, torch_dtype=torch.float32
        ).eval()
        # HFLM: the config's max_position_embeddings
        self.max_length = self.model.config.max_position_embeddings

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False)

    def encode_pair(self, context, continuation):
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.enc(context + continuation)
        ctx = self.enc(context)
        return ctx, whole[len(ctx) :]

    def loglikelihood(self, ctx_ids, cont_ids):
        torch = self.torch
        inp = (ctx_ids + cont_ids)[-(self.max_length + 1) :][:-1]
        with torch.no_grad():
            logits = self.model(torch.tensor([inp])).logits[0]
        lp = torch.log_softmax(logits, dim=-1)[-len(cont_ids) :]
        target = torch.tensor(cont_ids)
        greedy = bool((lp.argmax(-1) == target).all())
        ll = float(lp.gather(1, target[:, None]).sum())
        return ll, greedy

    def request(self, context, continuation):
        if context == "":
            raise ValueError("empty contexts do not occur in these tasks")
        c, t = self.encode_pair(context, continuation)
        ll, greedy = self.loglikelihood(c, t)
        return {
            "context": context,
            "continuation": continuation,
            "context_ids": c,
            "continuation_ids": t,
            "ll": ll,
            "is_greedy": greedy,
        }

    def generate(self, context, until, max_new):
        torch = self.torch
        ids = self.enc(context)
        with torch.no_grad():
            out = self.model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new,
                do_sample=False,
                pad_token_id=self.tok.eos_token_id,
            )[0][len(ids) :].tolist()
        text = self.tok.decode(out, skip_special_tokens=True)
        for u in until:
            text = text.split(u)[0]
        return ids, out, text


def argmax(xs):
    return max(range(len(xs)), key=lambda i: (xs[i], -i))


def run_mc(scorer, name, spec, limit, k, rnd):
    docs = spec["docs"]()
    pool = spec["pool"]() if spec["pool"] else docs
    out = []
    for i, d in enumerate(docs[:limit]):
        m = spec["doc"](d)

        def example(p):
            e = spec["doc"](p)
            return e["text"] + " " + e["choices"][e["gold"]]

        ctx = fewshot_prefix(rnd, pool, spec["same"], i, k, example) + m["text"]
        reqs = [scorer.request(ctx, " " + c) for c in m["choices"]]
        lls = [r["ll"] for r in reqs]
        norm = [ll / len(c) for ll, c in zip(lls, m["choices"])]
        out.append({"doc": i, "gold": m["gold"], "pred": argmax(lls), "pred_norm": argmax(norm), "requests": reqs})
    return out


def run_winogrande(scorer, limit, k, rnd):
    docs = jsonl(DATA / "winogrande" / "dev.jsonl")
    pool = jsonl(DATA / "winogrande" / "train_xs.jsonl")
    out = []
    for i, d in enumerate(docs[:limit]):
        m = winogrande_doc(d)

        def example(p):
            e = winogrande_doc(p)
            return e["contexts"][e["gold"]] + " " + e["target"]

        pre = fewshot_prefix(rnd, pool, False, i, k, example)
        reqs = [scorer.request(pre + c, " " + m["target"]) for c in m["contexts"]]
        lls = [r["ll"] for r in reqs]
        out.append({"doc": i, "gold": m["gold"], "pred": argmax(lls), "requests": reqs})
    return out


def run_lambada(scorer, limit, k, rnd):
    docs = jsonl(DATA / "lambada" / "lambada_test_openai.jsonl")
    out = []
    for i, d in enumerate(docs[:limit]):
        words = d["text"].split(" ")
        text, target = " ".join(words[:-1]), " " + words[-1]

        def example(p):
            w = p["text"].split(" ")
            return " ".join(w[:-1]) + " " + " " + w[-1]

        ctx = fewshot_prefix(rnd, docs, True, i, k, example) + text
        # output_type loglikelihood: (ctx, doc_to_target) with no target delimiter
        out.append({"doc": i, "requests": [scorer.request(ctx, target)]})
    return out


def run_mmlu(scorer, limit, k):
    out = []
    for subject in mmlu_subjects():
        docs = mmlu(subject, "test")
        dev = mmlu(subject, "dev")
        desc = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"

        def text(d):
            c = d["choices"]
            return f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"

        shots = "".join(text(p) + " " + "ABCD"[p["answer"]] + "\n\n" for p in dev[:k])
        for i, d in enumerate(docs[:limit]):
            reqs = [scorer.request(desc + shots + text(d), " " + c) for c in "ABCD"]
            lls = [r["ll"] for r in reqs]
            out.append({"subject": subject, "doc": i, "gold": d["answer"], "pred": argmax(lls), "requests": reqs})
    return out


STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEX = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")


def gsm8k_filters(text):
    m = STRICT.findall(text)
    strict = m[0] if m else "[invalid]"
    m = FLEX.findall(text)
    if m:
        last = m[-1]
        flexible = [g for g in last if g][0]
    else:
        flexible = "[invalid]"
    return strict, flexible


def gsm8k_norm(s):
    for r in [",", "\\$", "(?s).*#### ", "\\.$"]:
        s = re.sub(r, "", s)
    return s.lower().strip()


def run_gsm8k(scorer, limit, k, rnd):
    docs = jsonl(DATA / "gsm8k" / "test.jsonl")
    pool = jsonl(DATA / "gsm8k" / "train.jsonl")
    out = []
    for i, d in enumerate(docs[:limit]):
        pre = fewshot_prefix(rnd, pool, False, i, k, lambda p: f"Question: {p['question']}\nAnswer: {p['answer']}")
        ctx = pre + f"Question: {d['question']}\nAnswer:"
        ids, gen, text = scorer.generate(ctx, ["Question:", "</s>", "<|im_end|>"], 256)
        strict, flexible = gsm8k_filters(text)
        gold = gsm8k_norm(d["answer"])
        out.append(
            {
                "doc": i,
                "context": ctx,
                "context_ids": ids,
                "generated_ids": gen,
                "text": text,
                "strict": strict,
                "flexible": flexible,
                "strict_correct": gsm8k_norm(strict) == gold,
                "flexible_correct": gsm8k_norm(flexible) == gold,
            }
        )
    return out


def versions():
    import importlib.metadata as md

    return {p: md.version(p) for p in ["torch", "transformers", "gguf"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="arc_easy,arc_challenge,boolq,copa,winogrande,openbookqa,lambada,mmlu,gsm8k")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--arc-easy-dev", action="store_true", help="full ARC-Easy dev accuracy")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a busy machine: OpenMP spins)")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    scorer = Scorer(args.threads)
    meta = {"model": str(MODEL), "versions": versions(), "torch_threads": args.threads, "batch": 1}
    if args.arc_easy_dev:
        spec = dict(TASKS["arc_easy"], docs=lambda: arc("ARC-Easy")("Dev"))
        t = time.time()
        docs = run_mc(scorer, "arc_easy", spec, None, 0, random.Random(1234))
        secs = time.time() - t
        n = len(docs)
        acc = sum(d["pred"] == d["gold"] for d in docs) / n
        acc_norm = sum(d["pred_norm"] == d["gold"] for d in docs) / n
        res = {
            **meta,
            "file": "arc/ARC-Easy-Dev.jsonl",
            "n": n,
            "acc": acc,
            "acc_norm": acc_norm,
            "seconds": secs,
            "pred": [d["pred"] for d in docs],
            "pred_norm": [d["pred_norm"] for d in docs],
        }
        (OUT / "arc_easy_dev_full.json").write_text(json.dumps(res, indent=1) + "\n")
        print(f"ARC-Easy dev: acc {acc:.4f} acc_norm {acc_norm:.4f} n {n} in {secs:.1f}s")
        return
    for name in args.tasks.split(","):
        k = 5 if name == "gsm8k" else 0
        rnd = random.Random(1234)
        t = time.time()
        if name in TASKS:
            docs = run_mc(scorer, name, TASKS[name], args.limit, k, rnd)
        elif name == "winogrande":
            docs = run_winogrande(scorer, args.limit, k, rnd)
        elif name == "lambada":
            docs = run_lambada(scorer, args.limit, k, rnd)
        elif name == "mmlu":
            docs = run_mmlu(scorer, 1, k)
        elif name == "gsm8k":
            docs = run_gsm8k(scorer, min(args.limit, 2), k, rnd)
        else:
            sys.exit(f"unknown task {name}")
        secs = time.time() - t
        res = {**meta, "task": name, "num_fewshot": k, "seconds": secs, "docs": docs}
        (OUT / f"{name}.json").write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(docs)} docs in {secs:.1f}s", flush=True)
    # The few-shot sampler on its own, for the Rust port of random.Random(1234).sample.
    rnd = random.Random(1234)
    draws = [rnd.sample(range(n), k) for n, k in [(570, 5), (7473, 5), (100, 4), (3270, 2), (7473, 6), (20, 5)]]
    (OUT / "python_random_sample.json").write_text(json.dumps({"seed": 1234, "draws": draws}) + "\n")


if __name__ == "__main__":
    main()
