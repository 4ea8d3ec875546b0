//! `slm distill generate`: resumable generation (a killed run continues at the count reached,
//! nothing lost or duplicated, deterministic by seed), MinHash de-duplication, filters,
//! template errors and strict TOML.
//!
//! The resume tests run on a tiny random model with a character vocabulary (always), and on
//! llama2.c's stories260K when `../shared/data` is present.

use candle_core::Device;
use slm_data::chat::ChatTemplate;
use slm_data::tokenizer::train::{save, train_chars};
use slm_data::tokenizer::{HfTokenizer, Llama2cTokenizer, Tokenizer};
use slm_distill::generate::dedup::{exact_key, Deduper, DupCheck};
use slm_distill::generate::filters::{self, FilterConfig, Reject, Scores};
use slm_distill::generate::output::{rejected_path, settings_path, Record};
use slm_distill::generate::templates::TemplateSet;
use slm_distill::generate::{
    self, continue_prompt, prompt_for, teacher_nll, ChatPrompt, GenerateConfig, Stop, Summary,
    Teacher,
};
use slm_infer::GenerateOptions;
use slm_infer::SamplerConfig;
use slm_model::{Llama, LlamaConfig};
use std::path::Path;

// ---------------------------------------------------------------- teachers

struct Owned {
    model: Llama,
    tokenizer: Box<dyn Tokenizer>,
    name: String,
}

impl Owned {
    fn teacher(&self) -> Teacher<'_> {
        Teacher {
            model: &self.model,
            tokenizer: self.tokenizer.as_ref(),
            name: self.name.clone(),
        }
    }
}

/// A tiny random Llama over a character vocabulary (no files needed).
fn random_teacher(dir: &Path) -> Owned {
    let alphabet = "abcdefghijklmnopqrstuvwxyz .,";
    let tk = train_chars([alphabet].iter(), &["<|endoftext|>".into()]).unwrap();
    let p = dir.join("chars.json");
    save(&tk, &p).unwrap();
    let tokenizer = HfTokenizer::from_file(&p).unwrap();
    let mut cfg: LlamaConfig = slm_model::presets::preset("260k").unwrap();
    cfg.vocab_size = tokenizer.vocab_size();
    cfg.hidden_size = 32;
    cfg.intermediate_size = 64;
    cfg.num_hidden_layers = 2;
    cfg.num_attention_heads = 4;
    cfg.num_key_value_heads = 2;
    cfg.head_dim = 8;
    cfg.max_position_embeddings = 128;
    let model = Llama::random(cfg, 7, &Device::Cpu).unwrap();
    Owned {
        model,
        tokenizer: Box::new(tokenizer),
        name: "random".into(),
    }
}

/// stories260K with tok512, when `../shared/data` is present.
fn stories260k() -> Option<Owned> {
    let m = slm_core::testdata::shared_data("llama2c/stories260K.bin")?;
    let t = slm_core::testdata::shared_data("llama2c/tok512.bin")?;
    let loaded = slm_model::load(m.to_str().unwrap(), Some(&t)).unwrap();
    Some(Owned {
        model: loaded.model,
        tokenizer: Box::new(Llama2cTokenizer::from_file(&t).unwrap()),
        name: "stories260K".into(),
    })
}

/// Templates for the random teacher: one long prompt (kept) and one one-word prompt that
/// the length filter rejects, so runs have both kinds of line.
const TINY: &str = r#"
include_prompt = true
[[template]]
text = "the {noun} was very {adjective} and {adjective} today, said {name}."
weight = 2
[[template]]
text = "{noun}."
[lists]
noun = ["cat", "dog", "sun", "hat"]
adjective = ["big", "red", "old"]
name = ["tom", "sue"]
"#;

fn tiny_config(n: usize) -> GenerateConfig {
    GenerateConfig {
        n,
        max_tokens: 16,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_p: 1.0,
            seed: 11,
            ..SamplerConfig::default()
        },
        filters: FilterConfig {
            min_words: 6,
            max_repetition: 1.0,
            ..FilterConfig::default()
        },
        chunk: 3,
        ..GenerateConfig::default()
    }
}

fn stories_config(n: usize) -> GenerateConfig {
    GenerateConfig {
        n,
        max_tokens: 40,
        // Tight enough that some samples are rejected: both files get lines.
        filters: FilterConfig {
            min_words: 30,
            ..FilterConfig::default()
        },
        chunk: 4,
        ..GenerateConfig::default()
    }
}

fn run(o: &Owned, t: &TemplateSet, cfg: &GenerateConfig, out: &Path) -> Summary {
    generate::run(&o.teacher(), t, cfg, out, &mut |_| {}).unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn records(p: &Path) -> Vec<Record> {
    read(p)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Cuts `path` in the middle of line `line` (1-based), as a kill during a write would.
fn cut_mid_line(path: &Path, line: usize) {
    let text = read(path);
    let start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum();
    let len = text.split_inclusive('\n').nth(line - 1).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len((start + len / 2) as u64).unwrap();
}

// ---------------------------------------------------------------- resume

/// n, then 2n on the same file, equals 2n straight; a file cut mid-line continues to the
/// same bytes; the prompts are those of (seed, index); the kept file reads as documents.
fn check_resume(o: &Owned, t: &TemplateSet, cfg_for: impl Fn(usize) -> GenerateConfig) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
        dir.path().join("c/c.jsonl"),
    );

    let s = run(o, t, &cfg_for(10), &a);
    assert_eq!((s.kept, s.run_kept, s.resumed_kept), (10, 10, 0));
    let a10 = read(&a);
    let s = run(o, t, &cfg_for(20), &a);
    assert_eq!((s.kept, s.run_kept, s.resumed_kept), (20, 10, 10));
    let s = run(o, t, &cfg_for(20), &b);
    assert_eq!(s.kept, 20);
    let rejected_straight = s.run_rejected.values().sum::<usize>();
    assert!(
        rejected_straight > 0,
        "the settings should reject some samples"
    );
    assert_eq!(read(&a), read(&b), "10 then 20 differs from 20 straight");
    assert_eq!(read(&rejected_path(&a)), read(&rejected_path(&b)));
    assert!(read(&b).starts_with(&a10));

    // Counts and prompts are exact: 20 kept lines, indices increasing, each prompt that of
    // (seed, index), every index below the last accounted for exactly once.
    let kept = records(&b);
    let rej = records(&rejected_path(&b));
    assert_eq!(kept.len(), 20);
    let seed = cfg_for(20).sampler.seed;
    for r in kept.iter().chain(&rej) {
        assert_eq!(r.prompt, prompt_for(t, seed, r.index).unwrap());
        assert!(r.text.starts_with(&r.prompt) == t.file.include_prompt);
    }
    let mut all: Vec<u64> = kept.iter().chain(&rej).map(|r| r.index).collect();
    all.sort();
    let last = kept.last().unwrap().index;
    assert_eq!(all, (0..=last).collect::<Vec<_>>());
    assert!(kept.iter().all(|r| r.kept && r.reject.is_none()));
    assert!(rej.iter().all(|r| !r.kept && r.reject.is_some()));

    // Killed in the middle of writing kept line 15: the partial line is dropped, the run
    // continues at the sample after kept line 14 and ends at the same bytes.
    std::fs::create_dir_all(c.parent().unwrap()).unwrap();
    for (from, to) in [
        (&b, &c),
        (&rejected_path(&b), &rejected_path(&c)),
        (&settings_path(&b), &settings_path(&c)),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    cut_mid_line(&c, 15);
    let s = run(o, t, &cfg_for(20), &c);
    assert!(s.dropped_bytes > 0);
    assert_eq!(s.resumed_kept, 14);
    assert_eq!(s.resumed_index, kept[13].index + 1);
    assert_eq!(s.run_kept, 6);
    assert_eq!(read(&c), read(&b));
    assert_eq!(read(&rejected_path(&c)), read(&rejected_path(&b)));

    // Killed while writing a rejected line: the kept lines of that step (written after the
    // rejected ones) are not there yet.
    let rl = read(&rejected_path(&c)).lines().count();
    let last_rejected = rej[rl - 1].index;
    let before = kept.iter().filter(|r| r.index < last_rejected).count();
    cut_mid_line(&rejected_path(&c), rl);
    cut_mid_line(&c, before + 1);
    run(o, t, &cfg_for(20), &c);
    assert_eq!(read(&c), read(&b));
    assert_eq!(read(&rejected_path(&c)), read(&rejected_path(&b)));

    // Done already: nothing generated. Other settings: refused, naming the difference.
    let s = run(o, t, &cfg_for(20), &c);
    assert_eq!((s.run_generated, s.kept), (0, 20));
    let mut other = cfg_for(20);
    other.sampler.seed += 1;
    let e = generate::run(&o.teacher(), t, &other, &c, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("seed") && e.contains("--overwrite"), "{e}");
    // ...unless told to start again; another seed gives other samples.
    other.overwrite = true;
    run(o, t, &other, &c);
    assert_ne!(read(&c), read(&b));

    // `slm data prepare` reads the kept file as it is: one document per kept sample.
    let docs = slm_data::documents::jsonl_documents(&b, &read(&b)).unwrap();
    assert_eq!(docs.len(), 20);
}

#[test]
fn resume_continues_exactly_random_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let t = TemplateSet::from_toml(TINY, "tiny").unwrap();
    check_resume(&o, &t, tiny_config);
}

#[test]
fn resume_continues_exactly_stories260k() {
    let Some(o) = stories260k() else { return };
    let t = TemplateSet::builtin("stories").unwrap();
    check_resume(&o, &t, stories_config);
}

#[test]
fn output_does_not_depend_on_the_step_size() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let t = TemplateSet::from_toml(TINY, "tiny").unwrap();
    let mut outs = Vec::new();
    for chunk in [1, 5] {
        let out = dir.path().join(format!("{chunk}.jsonl"));
        let mut cfg = tiny_config(8);
        cfg.chunk = chunk;
        run(&o, &t, &cfg, &out);
        outs.push((read(&out), read(&rejected_path(&out))));
    }
    assert_eq!(outs[0], outs[1]);
}

/// Chat mode: each prompt is a user turn through the template; the settings file records it,
/// so a raw run cannot resume a chat run's output; the output differs from raw mode's.
#[test]
fn chat_mode_renders_prompts_and_is_part_of_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let t = TemplateSet::from_toml(TINY, "tiny").unwrap();
    let template = ChatTemplate::new(
        "{% for m in messages %}{{ m.role }}: {{ m.content }}. {% endfor %}assistant:",
        "test",
    )
    .unwrap();
    let chat = ChatPrompt {
        stop_tokens: template.stop_token_ids(o.tokenizer.as_ref()),
        template,
        system: Some("be nice".into()),
    };
    assert_eq!(
        chat.render("tell a story").unwrap(),
        "system: be nice. user: tell a story. assistant:"
    );
    let mut cfg = tiny_config(3);
    cfg.filters.min_words = 1;
    cfg.chat = Some(chat);
    let out = dir.path().join("chat.jsonl");
    let s = run(&o, &t, &cfg, &out);
    assert_eq!(s.kept, 3);
    let settings = read(&settings_path(&out));
    assert!(settings.contains("\"system\": \"be nice\""), "{settings}");

    let mut raw = cfg.clone();
    raw.chat = None;
    let e = generate::run(&o.teacher(), &t, &raw, &out, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("chat"), "{e}");
    let raw_out = dir.path().join("raw.jsonl");
    run(&o, &t, &raw, &raw_out);
    assert!(!read(&settings_path(&raw_out)).contains("\"chat\""));
    assert_ne!(read(&out), read(&raw_out));
}

#[test]
fn attempt_limit_stops_a_run_that_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let t = TemplateSet::from_toml(TINY, "tiny").unwrap();
    let mut cfg = tiny_config(5);
    cfg.filters.min_words = 1000;
    cfg.max_attempts = Some(7);
    let s = run(&o, &t, &cfg, &dir.path().join("x.jsonl"));
    assert!(s.hit_attempt_limit);
    assert_eq!((s.kept, s.run_generated), (0, 7));
    assert_eq!(s.run_rejected.get(&Reject::TooShort), Some(&7));
}

#[test]
fn an_existing_file_of_another_kind_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let t = TemplateSet::from_toml(TINY, "tiny").unwrap();
    let out = dir.path().join("mine.jsonl");
    std::fs::write(&out, "{\"text\": \"my own data\"}\n").unwrap();
    let e = generate::run(&o.teacher(), &t, &tiny_config(2), &out, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("--overwrite"), "{e}");
    assert_eq!(read(&out), "{\"text\": \"my own data\"}\n");
}

// ---------------------------------------------------------------- teacher perplexity

/// The one-pass NLL equals the sum of per-step NLLs through the KV cache.
#[test]
fn teacher_nll_matches_step_by_step_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let prompt = o.tokenizer.encode("the cat sat", false).unwrap();
    let tokens: Vec<u32> = o.tokenizer.encode(" on a mat.", false).unwrap();
    let got = teacher_nll(&o.model, &prompt, &tokens).unwrap().unwrap();
    let mut cache = o.model.new_cache();
    let mut seq = prompt.clone();
    let mut logits = o
        .model
        .forward(
            &candle_core::Tensor::new(seq.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            Some(&mut cache),
        )
        .unwrap();
    let mut total = 0.0f64;
    for &t in &tokens {
        let last = logits.dim(1).unwrap() - 1;
        let row: Vec<f32> = logits
            .narrow(1, last, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        total += lse - row[t as usize] as f64;
        seq.push(t);
        logits = o
            .model
            .forward(
                &candle_core::Tensor::new(&[t], &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
                Some(&mut cache),
            )
            .unwrap();
    }
    let want = total / tokens.len() as f64;
    assert!((got - want).abs() < 1e-4, "{got} vs {want}");
    assert_eq!(teacher_nll(&o.model, &prompt, &[]).unwrap(), None);
}

/// The NLL kept while sampling equals the one-pass recomputation.
#[test]
fn sampling_scores_match_a_separate_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let o = random_teacher(dir.path());
    let opts = GenerateOptions {
        max_tokens: 20,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_p: 0.9,
            seed: 5,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    let c = continue_prompt(&o.model, o.tokenizer.as_ref(), "the cat", &opts).unwrap();
    assert!(!c.tokens.is_empty());
    let again = teacher_nll(&o.model, &c.prompt_tokens, &c.tokens)
        .unwrap()
        .unwrap();
    let nll = c.nll.unwrap();
    assert!((nll - again).abs() < 1e-4, "{nll} vs {again}");
    // The same seed, the same text as slm generate's loop.
    let g = slm_infer::generate(
        &o.model,
        o.tokenizer.as_ref(),
        "the cat",
        &opts,
        &mut |_| Ok(()),
    )
    .unwrap();
    if c.stop != Stop::Bos {
        assert_eq!(g.tokens, c.tokens);
    }
}

/// stories260K separates stories with BOS: the teacher stops there instead of starting the
/// next story.
#[test]
fn stories260k_stops_at_the_story_boundary() {
    let Some(o) = stories260k() else { return };
    let opts = GenerateOptions {
        max_tokens: 400,
        sampler: SamplerConfig::greedy(),
        ..GenerateOptions::default()
    };
    let c = continue_prompt(
        &o.model,
        o.tokenizer.as_ref(),
        "Once upon a time, there was a little girl named Lily.",
        &opts,
    )
    .unwrap();
    assert_eq!(c.stop, Stop::Bos, "{}", c.text);
    assert_eq!(c.text.matches("Once upon a time").count(), 0, "{}", c.text);
    let ppl = c.nll.unwrap().exp();
    assert!((1.0..10.0).contains(&ppl), "{ppl}");
}

// ---------------------------------------------------------------- de-duplication

const STORY: &str = "Once upon a time there was a little girl named Lily. She loved to play \
in the park with her red ball. One day she saw a big dog under a tree. The dog was sad \
because it had lost its bone. Lily wanted to help, so she looked under the bench and behind \
the slide. At last she found the bone in the sand and gave it to the dog. The dog wagged its \
tail and they became best friends.";

const OTHER: &str = "Tom had a small boat made of wood. Every morning he took it to the pond \
behind his house and watched it float on the water. One windy day the boat sailed far away \
from him. Tom ran around the pond and asked a frog for help. The frog swam out, pushed the \
boat back to the shore, and Tom thanked his new green friend with a big smile.";

#[test]
fn minhash_flags_near_duplicates_and_keeps_different_texts() {
    let mut d = Deduper::new(0.8, 3, 128).unwrap();
    assert_eq!(d.check_and_insert(0, STORY), DupCheck::Unique);
    // One word changed out of ~75: 3-gram Jaccard ≈ 0.92.
    let near = STORY.replace("red ball", "blue ball");
    match d.check_and_insert(1, &near) {
        DupCheck::Near { of, similarity } => {
            assert_eq!(of, 0);
            assert!((0.8..1.0).contains(&similarity), "{similarity}");
        }
        c => panic!("near-identical text not flagged: {c:?}"),
    }
    assert_eq!(d.check_and_insert(2, OTHER), DupCheck::Unique);
    // Exact duplicates, also with other case and spacing.
    assert_eq!(d.check_and_insert(3, STORY), DupCheck::Exact { of: 0 });
    let respaced = OTHER.to_uppercase().replace(' ', "  \n");
    assert_eq!(d.check_and_insert(4, &respaced), DupCheck::Exact { of: 2 });
    assert_eq!(exact_key("a  B\nc"), exact_key("A b c"));
    // Neither near duplicate nor exact duplicate was kept: two texts remain.
    assert_eq!(d.len(), 2);
}

#[test]
fn minhash_threshold_is_configurable() {
    // Half of the story rewritten: similar, but well below 0.8.
    let half: String = STORY
        .split(". ")
        .enumerate()
        .map(|(i, s)| {
            if i % 2 == 0 {
                s.to_string()
            } else {
                OTHER.split(". ").nth(i).unwrap_or("x").to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(". ");
    let mut strict = Deduper::new(0.8, 3, 128).unwrap();
    strict.check_and_insert(0, STORY);
    assert_eq!(strict.check_and_insert(1, &half), DupCheck::Unique);
    let mut loose = Deduper::new(0.2, 3, 128).unwrap();
    loose.check_and_insert(0, STORY);
    assert!(matches!(
        loose.check_and_insert(1, &half),
        DupCheck::Near { of: 0, .. }
    ));
    assert!(Deduper::new(0.0, 3, 128).is_err());
    assert!(Deduper::new(1.5, 3, 128).is_err());
    assert!(Deduper::new(0.8, 0, 128).is_err());
}

// ---------------------------------------------------------------- filters

#[test]
fn filters_reject_by_length_repetition_and_perplexity() {
    let cfg = FilterConfig {
        min_words: 5,
        max_words: Some(100),
        max_repetition: 0.3,
        min_teacher_ppl: Some(1.5),
        max_teacher_ppl: Some(20.0),
        require_end: true,
    };
    let ok = filters::score("the cat sat on the mat and then it slept", Some(1.0));
    assert_eq!(ok.words, 10);
    assert_eq!(filters::check(&cfg, &ok, 12, true), None);
    let chk =
        |text: &str, nll: f64| filters::check(&cfg, &filters::score(text, Some(nll)), 5, true);
    assert_eq!(chk("too short", 1.0), Some(Reject::TooShort));
    assert_eq!(chk(&"word ".repeat(101), 1.0), Some(Reject::TooLong));
    assert_eq!(
        chk(&"and they played ".repeat(6), 1.0),
        Some(Reject::Repetitive)
    );
    assert_eq!(chk(STORY, 0.1), Some(Reject::LowPpl)); // exp(0.1) = 1.1 < 1.5
    assert_eq!(chk(STORY, 4.0), Some(Reject::HighPpl)); // exp(4) = 54.6 > 20
    assert_eq!(chk(STORY, 1.0), None);
    assert_eq!(
        filters::check(&cfg, &filters::score(STORY, Some(1.0)), 5, false),
        Some(Reject::Truncated)
    );
    assert_eq!(
        filters::check(&cfg, &filters::score("", None), 0, true),
        Some(Reject::Empty)
    );
    // A story reads as barely repetitive; a loop reads as mostly repeated.
    assert!(filters::repetition_ratio(STORY, 3) < 0.05);
    assert!(filters::repetition_ratio(&"the dog ran. ".repeat(20), 3) > 0.9);
    let bad = FilterConfig {
        min_words: 10,
        max_words: Some(5),
        ..FilterConfig::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("--max-words"));
}

#[test]
fn scores_serialise_with_the_sample() {
    let s = Scores {
        teacher_ppl: Some(3.25),
        repetition: 0.01,
        words: 42,
        similarity: None,
    };
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"teacher_ppl": 3.25, "repetition": 0.01, "words": 42})
    );
}

#[test]
fn cut_texts_end_at_a_sentence() {
    use slm_distill::generate::to_last_sentence_end as cut;
    assert_eq!(cut(" He ran. She sm"), " He ran.");
    assert_eq!(cut(" \"Hi!\" she said. \"Come"), " \"Hi!\" she said.");
    assert_eq!(cut(" She said, \"Yes.\" Then"), " She said, \"Yes.\"");
    assert_eq!(cut(" no end here"), " no end here");
}

// ---------------------------------------------------------------- templates

fn err(src: &str) -> String {
    TemplateSet::from_toml(src, "t.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn template_errors_name_the_problem() {
    let e = err("[[template]]\ntext = \"a {nuon}\"\n[lists]\nnoun = [\"cat\"]\n");
    assert!(e.contains("t.toml") && e.contains("template 1"), "{e}");
    assert!(
        e.contains("unknown slot `{nuon}`") && e.contains("defined slots: noun"),
        "{e}"
    );
    let e = err("[[template]]\ntext = \"a {noun}\"\n[lists]\nnoun = []\n");
    assert!(e.contains("list `noun` is empty"), "{e}");
    let e = err("[[template]]\ntext = \"a {f}\"\n[features.f]\nitems = []\n");
    assert!(e.contains("feature list `f` is empty"), "{e}");
    let e =
        err("[[template]]\ntext = \"a {f}\"\n[features.f]\nitems = [\"x\"]\nmin = 1\nmax = 2\n");
    assert!(e.contains("min ≤ max ≤ number of items"), "{e}");
    let e = err("[[template]]\ntext = \"a {x}\"\n[lists]\nx = [\"{y}\"]\ny = [\"{x}\"]\n");
    assert!(e.contains("loop") && e.contains("x → y → x"), "{e}");
    let e = err("[[template]]\ntext = \"a {x\"\n[lists]\nx = [\"1\"]\n");
    assert!(e.contains("never closed"), "{e}");
    let e = err("[lists]\nx = [\"1\"]\n");
    assert!(e.contains("no templates"), "{e}");
    let e = err("[[template]]\ntext = \"a {x}\"\n[lists]\nx = [\"{z}\"]\n");
    assert!(e.contains("`x` uses unknown slot `{z}`"), "{e}");
    let e = err("[[template]]\ntext = \"a\"\nweight = 0\n");
    assert!(e.contains("weight"), "{e}");
}

#[test]
fn toml_rejects_unknown_keys_everywhere() {
    for (src, key) in [
        (
            "includ_prompt = true\n[[template]]\ntext = \"a\"\n",
            "includ_prompt",
        ),
        ("[[template]]\ntext = \"a\"\nwieght = 2\n", "wieght"),
        (
            "[[template]]\ntext = \"a\"\n[sampling]\ntemprature = 1.0\n",
            "temprature",
        ),
        (
            "[[template]]\ntext = \"a {f}\"\n[features.f]\nitems = [\"x\"]\njoint = \" \"\n",
            "joint",
        ),
    ] {
        let e = err(src);
        assert!(e.contains("unknown field") && e.contains(key), "{src}: {e}");
    }
}

#[test]
fn prompts_fill_slots_consistently_and_deterministically() {
    let t = TemplateSet::from_toml(
        "[[template]]\ntext = \"{name} saw {a:noun}. {name} said {f}. {{ok}}\"\n\
         [lists]\nname = [\"Ann\", \"Bo\"]\nnoun = [\"apple\", \"cat\"]\n\
         [features.f]\nitems = [\"x\", \"y\", \"z\"]\nmin = 2\nmax = 2\njoin = \" and \"\n",
        "t",
    )
    .unwrap();
    for i in 0..20 {
        let p = prompt_for(&t, 3, i).unwrap();
        assert_eq!(p, prompt_for(&t, 3, i).unwrap());
        let name = p.split(' ').next().unwrap();
        assert!(p.contains(&format!(". {name} said ")), "{p}");
        assert!(p.contains("an apple") || p.contains("a cat"), "{p}");
        assert!(p.ends_with(". {ok}"), "{p}");
        assert_eq!(p.matches(" and ").count(), 1, "{p}");
    }
    let a: Vec<String> = (0..20).map(|i| prompt_for(&t, 3, i).unwrap()).collect();
    let b: Vec<String> = (0..20).map(|i| prompt_for(&t, 4, i).unwrap()).collect();
    assert_ne!(a, b);
}

#[test]
fn built_in_sets_parse_and_follow_the_tinystories_recipe() {
    for name in TemplateSet::builtin_names() {
        let t = TemplateSet::builtin(name).unwrap();
        for key in ["verb", "noun", "adjective"] {
            assert!(t.file.lists[key].len() >= 100, "{name}: {key}");
        }
        for i in 0..50 {
            let p = prompt_for(&t, 1, i).unwrap();
            assert!(!p.contains('{') && !p.contains("  "), "{p}");
        }
    }
    let stories = TemplateSet::builtin("stories").unwrap();
    assert!(stories.file.include_prompt);
    let instruct = TemplateSet::builtin("instruct").unwrap();
    assert!(!instruct.file.include_prompt);
    let p = prompt_for(&instruct, 1, 0).unwrap();
    assert!(p.contains("The story should use the verb"), "{p}");
    assert!(TemplateSet::resolve("stories").is_ok());
    let e = TemplateSet::resolve("storys").unwrap_err().to_string();
    assert!(e.contains("stories, instruct"), "{e}");
}
