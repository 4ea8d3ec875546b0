//! Packed sequences through the engine: a batch of rows holding several examples back to
//! back (and padding) trains exactly as each example alone — same summed loss, same
//! parameter gradients — and `starts = None` is the unpacked path bit for bit.

mod common;

use common::{config, random_tensors, rel_max_diff, Lcg};
use slm_kernels::segments::row_starts;
use slm_kernels::IGNORE_INDEX;
use slm_model::LlamaConfig;
use slm_train::FastModel;

/// Sequence length of a packed row: longer than one attention block (64), so examples
/// straddle block edges.
const SEQ: usize = 80;

/// Example lengths per row; the rest of each row is padding.
const ROWS: [&[usize]; 2] = [&[23, 41, 9], &[5, 66]];

fn cfg() -> LlamaConfig {
    // GQA, q/k/v bias, untied head.
    config(61, 48, 72, 2, 4, 2, 12, false, true)
}

/// One example: its input ids and targets (some ignored).
struct Example {
    inputs: Vec<u32>,
    targets: Vec<u32>,
}

impl Example {
    fn counted(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE_INDEX).count()
    }
}

/// The examples of [`ROWS`] and the packed batch [2, SEQ]: inputs, targets (ignored on
/// padding) and starts.
fn packed(vocab: usize, seed: u64) -> (Vec<Example>, Vec<u32>, Vec<u32>, Vec<u32>) {
    let mut rng = Lcg::new(seed);
    let (mut examples, mut inputs, mut targets, mut starts) = (vec![], vec![], vec![], vec![]);
    for lengths in ROWS {
        for &len in lengths {
            let ex = Example {
                inputs: (0..len).map(|_| rng.below(vocab)).collect(),
                // Every 7th target ignored, as a prompt's would be.
                targets: (0..len)
                    .map(|i| {
                        if i % 7 == 3 {
                            IGNORE_INDEX
                        } else {
                            rng.below(vocab)
                        }
                    })
                    .collect(),
            };
            inputs.extend(&ex.inputs);
            targets.extend(&ex.targets);
            examples.push(ex);
        }
        let pad = SEQ - lengths.iter().sum::<usize>();
        inputs.extend((0..pad).map(|_| rng.below(vocab)));
        targets.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
        starts.extend(row_starts(lengths, SEQ).unwrap());
    }
    (examples, inputs, targets, starts)
}

/// The engine's gradients as f64, parameter by parameter, times `scale`.
fn grads(fast: &FastModel, scale: f64) -> Vec<(String, Vec<f64>)> {
    fast.params()
        .iter()
        .map(|p| {
            let g = fast.grad(&p.name).unwrap();
            (
                p.name.clone(),
                g.iter().map(|&x| x as f64 * scale).collect(),
            )
        })
        .collect()
}

#[test]
fn packed_batch_equals_examples_alone() {
    let cfg = cfg();
    let tensors = random_tensors(&cfg, 11, 4.0);
    let (examples, inputs, targets, starts) = packed(cfg.vocab_size, 12);
    assert_eq!(examples.len(), 5);
    let total: usize = examples.iter().map(Example::counted).sum();
    // Both ways of saving attention state: probabilities, and log-sum-exps.
    for budget in [slm_train::engine::DEFAULT_PROBS_BUDGET, 0] {
        let mut fast = FastModel::new(&cfg, &tensors).unwrap();
        fast.set_attention_probs_budget(budget);

        // Each example alone: a batch of one, seq = its length. Summed loss and the
        // gradient of the summed loss (the engine's are of the mean).
        let mut alone_loss = 0f64;
        let mut alone: Vec<(String, Vec<f64>)> = grads(&fast, 0.0);
        for ex in &examples {
            fast.zero_grad();
            let len = ex.inputs.len();
            let loss = fast
                .forward_backward(&ex.inputs, &ex.targets, 1, len)
                .unwrap();
            let c = ex.counted() as f64;
            alone_loss += loss as f64 * c;
            for ((_, acc), (_, g)) in alone.iter_mut().zip(grads(&fast, c)) {
                acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
            }
        }

        fast.zero_grad();
        let loss = fast
            .forward_backward_packed(&inputs, &targets, Some(&starts), 2, SEQ)
            .unwrap();
        let packed_loss = loss as f64 * total as f64;
        let rel = ((packed_loss - alone_loss) / alone_loss).abs();
        assert!(
            rel < 1e-5,
            "budget {budget}: summed loss packed {packed_loss} vs alone {alone_loss}"
        );
        let mut worst = 0f32;
        for ((name, want), (_, got)) in alone.iter().zip(grads(&fast, total as f64)) {
            let want: Vec<f32> = want.iter().map(|&x| x as f32).collect();
            let got: Vec<f32> = got.iter().map(|&x| x as f32).collect();
            assert!(want.iter().any(|&x| x != 0.0), "{name}: zero gradient");
            let rel = rel_max_diff(&got, &want);
            assert!(
                rel < 1e-5,
                "{name} (budget {budget}): max |diff| / max |g| = {rel}"
            );
            worst = worst.max(rel);
        }
        eprintln!(
            "probs budget {budget}: summed loss packed {packed_loss} vs alone {alone_loss}; \
             worst gradient max|diff|/max|g| {worst:.2e}"
        );

        // The loss alone, without gradients, and the gradients untouched by it.
        let before = fast.flat_grads().to_vec();
        let eval = fast
            .forward_loss_packed(&inputs, &targets, Some(&starts), 2, SEQ)
            .unwrap();
        assert!(((eval - loss) / loss).abs() < 1e-6, "eval {eval} vs {loss}");
        assert_eq!(fast.flat_grads(), &before[..]);
    }
}

/// Without starts (and with one example per row, the same thing) the packed entry points
/// are the unpacked ones bit for bit.
#[test]
fn no_starts_is_the_unpacked_path_bit_for_bit() {
    let cfg = cfg();
    let tensors = random_tensors(&cfg, 21, 4.0);
    let (_, inputs, targets, _) = packed(cfg.vocab_size, 22);
    let zeros = vec![0u32; 2 * SEQ];
    for budget in [slm_train::engine::DEFAULT_PROBS_BUDGET, 0] {
        let run = |starts: Option<Option<&[u32]>>| {
            let mut fast = FastModel::new(&cfg, &tensors).unwrap();
            fast.set_attention_probs_budget(budget);
            let (loss, eval) = match starts {
                None => (
                    fast.forward_backward(&inputs, &targets, 2, SEQ).unwrap(),
                    fast.forward_loss(&inputs, &targets, 2, SEQ).unwrap(),
                ),
                Some(st) => (
                    fast.forward_backward_packed(&inputs, &targets, st, 2, SEQ)
                        .unwrap(),
                    fast.forward_loss_packed(&inputs, &targets, st, 2, SEQ)
                        .unwrap(),
                ),
            };
            (loss.to_bits(), eval.to_bits(), fast.flat_grads().to_vec())
        };
        let plain = run(None);
        assert!(plain == run(Some(None)), "budget {budget}: starts None");
        assert!(
            plain == run(Some(Some(&zeros))),
            "budget {budget}: one example per row"
        );
    }
}

#[test]
fn bad_starts_are_refused() {
    let cfg = cfg();
    let tensors = random_tensors(&cfg, 31, 1.0);
    let (_, inputs, targets, starts) = packed(cfg.vocab_size, 32);
    let mut fast = FastModel::new(&cfg, &tensors).unwrap();
    let mut bad = starts.clone();
    bad[SEQ + 3] = 2; // row 1, position 3 neither continues position 2 nor begins at 3
    for st in [&starts[1..], &bad[..]] {
        let err = fast
            .forward_backward_packed(&inputs, &targets, Some(st), 2, SEQ)
            .unwrap_err();
        assert!(err.to_string().contains("segment starts"), "{err}");
        assert!(fast
            .forward_loss_packed(&inputs, &targets, Some(st), 2, SEQ)
            .is_err());
    }
    assert!(fast.flat_grads().iter().all(|&g| g == 0.0));
}
