//! Fine-tuning data (`slm_data::sft`) on the real files of the shared data: the instruction
//! sets read in their formats (or refused with the row and the keys found), a ShareGPT
//! conversation tokenised with SmolLM2's tokenizer and ChatML template (the trained tokens are
//! exactly the assistant turns with their `<|im_end|>\n`; the prompts are what inference
//! encodes), and `prepare` packing two files into rows.

use std::path::PathBuf;

use slm_data::chat::{ChatTemplate, Message};
use slm_data::sft::{
    prepare, read_examples, tokenize_example, Example, Format, Packing, SftOptions, TrainOn,
    IGNORE_INDEX,
};
use slm_data::{load_tokenizer, Tokenizer};
use slm_io::TokenizerSource;

const SMOLLM2: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

fn data(rel: &str) -> Option<PathBuf> {
    slm_core::testdata::shared_data(rel)
}

#[test]
fn instruction_files_read_in_their_formats() {
    let Some(dir) = data("instruct") else { return };
    let (f, ex) = read_examples(&dir.join("dummy_conversation.json")).unwrap();
    assert_eq!(f, Format::ShareGpt);
    assert_eq!(ex.len(), 500);
    let Example::Chat(first) = &ex[0] else {
        panic!("{:?}", ex[0])
    };
    assert_eq!(first[0], Message::user("Who are you?"));
    assert_eq!(first[1].role, "assistant");
    assert!(first[1].content.starts_with("I am Vicuna"));

    let (f, ex) = read_examples(&dir.join("identity.json")).unwrap();
    assert_eq!(f, Format::Alpaca);
    assert_eq!(ex.len(), 91);
    assert_eq!(
        ex[0],
        Example::Chat(vec![
            Message::user("hi"),
            Message::assistant(
                "Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I assist you today?"
            )
        ])
    );

    if let Some(c4) = data("calib/c4_demo.jsonl") {
        let (f, ex) = read_examples(&c4).unwrap();
        assert_eq!(f, Format::Text);
        assert_eq!(ex.len(), 300);
    }
}

#[test]
fn files_of_no_known_format_are_refused_with_line_one_and_the_keys() {
    let Some(dir) = data("instruct") else { return };
    for (file, keys) in [
        (
            "mt_bench_question.jsonl",
            &["\"question_id\"", "\"category\"", "\"turns\""][..],
        ),
        (
            "self_instruct_seed_tasks.jsonl",
            &["\"instruction\"", "\"instances\"", "\"is_classification\""][..],
        ),
        (
            "user_oriented_instructions.jsonl",
            &["\"instruction\"", "\"instances\"", "\"motivation_app\""][..],
        ),
    ] {
        let e = read_examples(&dir.join(file)).unwrap_err().to_string();
        assert!(e.contains(&format!("{file}:1:")), "{e}");
        assert!(e.contains("fits no known format"), "{e}");
        for k in keys {
            assert!(e.contains(k), "{file}: {k} not in {e}");
        }
    }
}

/// SmolLM2's tokenizer and chat template from its GGUF file.
fn smollm2() -> Option<(Box<dyn Tokenizer>, ChatTemplate)> {
    let path = data(SMOLLM2)?;
    let header = slm_io::gguf::read_header(&path).unwrap();
    let vocab = slm_io::gguf::vocab(&path, &header).unwrap().unwrap();
    let source = TokenizerSource::Gguf(vocab);
    let tok = load_tokenizer(&source).unwrap();
    let t = ChatTemplate::resolve(None, &source, None, &path, tok.as_ref()).unwrap();
    Some((tok, t))
}

/// `ids` as text with special tokens (`<|...|>`) written out, which `decode` drops.
fn text_with_specials(tok: &dyn Tokenizer, ids: &[u32]) -> String {
    let mut out = String::new();
    let mut run = Vec::new();
    for &id in ids {
        let piece = tok.id_to_piece(id).unwrap();
        if piece.starts_with("<|") && piece.ends_with("|>") {
            out.push_str(&tok.decode(&run).unwrap());
            run.clear();
            out.push_str(&piece);
        } else {
            run.push(id);
        }
    }
    out.push_str(&tok.decode(&run).unwrap());
    out
}

#[test]
fn smollm2_trains_exactly_the_assistant_turns() {
    let Some(dir) = data("instruct") else { return };
    let Some((tok, t)) = smollm2() else { return };
    let tok = tok.as_ref();
    // SmolLM2's GGUF says add_bos_token = false; its template writes no BOS either.
    assert!(!tok.adds_bos());
    let (_, ex) = read_examples(&dir.join("dummy_conversation.json")).unwrap();
    // identity_0: two exchanges.
    let Example::Chat(m) = &ex[0] else { panic!() };
    assert_eq!(m.len(), 4);
    let out = tokenize_example(&ex[0], tok, Some(&t), TrainOn::Completion, tok.adds_bos()).unwrap();
    let full = t.render(m, false).unwrap();
    assert!(full.starts_with("<|im_start|>system\n"), "{full}"); // the template's default
                                                                 // The ids are what encoding the whole conversation gives, and spell it.
    assert_eq!(out.ids, tok.encode(&full, false).unwrap());
    assert_eq!(text_with_specials(tok, &out.ids), full);
    // The trained tokens: each assistant turn and its end-of-turn text, nothing else.
    let mut runs = Vec::new();
    let mut starts = Vec::new();
    let mut k = 0;
    while k < out.ids.len() {
        if out.trained[k] {
            let s = k;
            while k < out.ids.len() && out.trained[k] {
                k += 1;
            }
            starts.push(s);
            runs.push(text_with_specials(tok, &out.ids[s..k]));
        } else {
            k += 1;
        }
    }
    assert_eq!(
        runs,
        [
            format!("{}<|im_end|>\n", m[1].content),
            format!("{}<|im_end|>\n", m[3].content)
        ]
    );
    // Each answer's prompt is exactly what inference encodes for it.
    for (s, i) in starts.iter().zip([1, 3]) {
        let prompt = tok
            .encode(&t.render(&m[..i], true).unwrap(), false)
            .unwrap();
        assert_eq!(&out.ids[..*s], &prompt[..], "prompt of message {i}");
    }

    // --train-on all: the same ids, all trained but the first.
    let all = tokenize_example(&ex[0], tok, Some(&t), TrainOn::All, false).unwrap();
    assert_eq!(all.ids, out.ids);
    assert_eq!(all.trained_count(), all.ids.len() - 1);
}

#[test]
fn smollm2_prepare_packs_conversations_and_alpaca_rows() {
    let Some(dir) = data("instruct") else { return };
    let Some((tok, t)) = smollm2() else { return };
    let tok = tok.as_ref();
    let files = [
        dir.join("dummy_conversation.json"),
        dir.join("identity.json"),
    ];
    let opts = SftOptions {
        train_on: TrainOn::Completion,
        add_bos: tok.adds_bos(),
        seq: 512,
        packing: Packing::On,
        pad_id: tok.eos_id().unwrap(),
        eval_fraction: 0.05,
        seed: 42,
    };
    let p = prepare(&files, tok, Some(&t), &opts).unwrap();
    let s = &p.summary;
    println!("{s}");
    assert_eq!(s.files[0].format, Format::ShareGpt);
    assert_eq!(s.files[0].rows, 500);
    assert_eq!(s.files[1].format, Format::Alpaca);
    assert_eq!(s.files[1].rows, 91);
    let eval = s.eval.unwrap();
    assert_eq!(eval.examples + eval.dropped, 30); // round(591 × 0.05)
    assert_eq!(s.train.examples + s.train.dropped, 561);
    assert_eq!(s.train.dropped, 0);
    assert!(s.train.fill > 0.9, "{s}");
    let off = prepare(
        &files,
        tok,
        Some(&t),
        &SftOptions {
            packing: Packing::Off,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(off.train.rows(), s.train.examples);
    assert_eq!(off.summary.train.trained_tokens, s.train.trained_tokens);
    assert!(p.train.rows() * 3 < off.train.rows(), "{s}");

    // Every trained target is the next input of its segment, and every segment's trained
    // text ends its answers with <|im_end|>.
    let im_end = tok.token_to_id("<|im_end|>").unwrap();
    let mut answers_ending = 0;
    for r in 0..p.train.rows() {
        let row = p.train.row(r);
        for q in 0..p.train.seq {
            let target = row.targets[q];
            if target == IGNORE_INDEX {
                continue;
            }
            if q + 1 < p.train.seq && row.starts[q + 1] == row.starts[q] {
                assert_eq!(row.inputs[q + 1], target);
            }
            if target == im_end {
                answers_ending += 1;
            }
        }
    }
    // One trained <|im_end|> per assistant turn kept (none is cut at seq 512).
    assert_eq!(s.train.truncated, 0, "{s}");
    let (_, conv) = read_examples(&files[0]).unwrap();
    let turns: usize = conv
        .iter()
        .map(|e| match e {
            Example::Chat(m) => m.iter().filter(|m| m.role == "assistant").count(),
            _ => 0,
        })
        .sum();
    let eval_rows = p.eval.as_ref().unwrap();
    let eval_ends = eval_rows.targets.iter().filter(|&&x| x == im_end).count();
    assert_eq!(answers_ending + eval_ends, turns + 91);
}
