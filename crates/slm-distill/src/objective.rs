//! Distillation as the trainer's objective ([`slm_train::Objective`]): each micro-batch's
//! loss mixes the hard-label cross-entropy with a divergence from the teacher's
//! distribution (a live [`Teacher`] or its top-k cache), optionally plus the hidden-state
//! loss ([`crate::hidden`]), on batches that on-policy distillation may first replace with
//! the student's own samples ([`crate::on_policy`]).

use crate::config::RunConfig;
use crate::hidden::{default_pairs, parse_pairs, pruned_pairs, HiddenDistill, HIDDEN_PROJECTION};
use crate::loss::DistillSpec;
use crate::on_policy::OnPolicy;
use crate::teacher::{LocalTeacher, Teacher};
use slm_core::{Error, Result};
use slm_data::kd_cache::KdCache;
use slm_data::prepare::TRAIN_SHARD;
use slm_data::shards::Shard;
use slm_kernels::distill::TopK;
use slm_model::LlamaConfig;
use slm_train::optim::AdamWConfig;
use slm_train::{DistillLoss, FastModel, Loss, MicroBatch, Objective};
use std::path::Path;

/// Where the soft targets come from.
enum Source {
    /// A live teacher, scored on every batch.
    Online(Box<dyn Teacher>, DistillSpec),
    /// A teacher's top-k per position (`slm distill cache`), with the teacher term's weight
    /// and the gather buffers (ids, log-probs, tail mass).
    Offline {
        cache: KdCache,
        weight: f32,
        top: (Vec<u32>, Vec<f32>, Vec<f32>),
    },
}

/// The distillation objective of one run (see the module documentation).
pub struct Distillation {
    source: Source,
    hidden: Option<HiddenDistill>,
    on_policy: Option<OnPolicy>,
    seq_len: usize,
}

impl Distillation {
    /// The distillation `cfg.distill` asks for, for a student of architecture `student`:
    /// loads the teacher (or opens its cache) and checks it can score the run's batches.
    /// `None` when `[distill]` names neither a teacher nor a cache.
    pub fn from_config(cfg: &RunConfig, student: &LlamaConfig) -> Result<Option<Self>> {
        let (d, t) = (&cfg.distill, &cfg.train);
        let Some(spec) = d.spec()? else {
            return Ok(None);
        };
        let source = match (&d.cache, &d.teacher) {
            (Some(path), _) => {
                let train = Shard::open(&Path::new(&t.data).join(TRAIN_SHARD))?;
                Source::Offline {
                    cache: open_cache(path, student.vocab_size, t.seq_len, &train)?,
                    weight: spec.kd_weight,
                    top: Default::default(),
                }
            }
            (None, Some(path)) => {
                let teacher = LocalTeacher::load(path)?;
                teacher.check_fits(student.vocab_size, t.seq_len)?;
                Source::Online(Box::new(teacher), spec)
            }
            (None, None) => return Ok(None),
        };
        let hidden = match (d.hidden.kind, &source) {
            (None, _) => None,
            (Some(kind), Source::Online(teacher, _)) => {
                let (sl, tl) = (student.num_hidden_layers, teacher.num_layers());
                let pairs = match &d.hidden.layers {
                    Some(map) => parse_pairs(map)?,
                    None => t
                        .init
                        .as_deref()
                        .and_then(|init| pruned_pairs(Path::new(init), sl, tl))
                        .unwrap_or_else(|| default_pairs(sl, tl)),
                };
                Some(HiddenDistill::new(
                    kind,
                    d.hidden.weight as f32,
                    &pairs,
                    (sl, student.hidden_size),
                    (tl, teacher.hidden_size()),
                    t.seed ^ 0x4849_4444_454E,
                )?)
            }
            (Some(_), Source::Offline { .. }) => {
                return Err(Error::config(
                    "`distill.hidden` needs the live teacher (`distill.teacher`)",
                ))
            }
        };
        let p = &d.on_policy;
        let on_policy = (p.lambda > 0.0).then(|| OnPolicy {
            lambda: p.lambda,
            prompt: p.prompt.unwrap_or(t.seq_len / 2),
            temperature: p.temperature as f32,
            top_p: p.top_p as f32,
            seed: t.seed,
        });
        Ok(Some(Self {
            source,
            hidden,
            on_policy,
            seq_len: t.seq_len,
        }))
    }
}

/// Opens the teacher cache at `path` and checks it was built for this run's vocabulary,
/// window length and training shard.
fn open_cache(path: &str, vocab: usize, seq_len: usize, train: &Shard) -> Result<KdCache> {
    let cache = KdCache::open(Path::new(path))?;
    let h = cache.header();
    let problem = if h.vocab_size != vocab {
        Some(format!(
            "its vocabulary has {} tokens, the student's {vocab}",
            h.vocab_size
        ))
    } else if h.seq_len != seq_len {
        Some(format!(
            "it was built at seq_len {}, training uses {seq_len}",
            h.seq_len
        ))
    } else if h.shard_tokens != train.len() {
        Some(format!(
            "it was built from a shard of {} tokens, {} holds {}",
            h.shard_tokens,
            train.path().display(),
            train.len()
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::config(format!(
            "the teacher cache {path} does not match this run: {p}. Rebuild it with \
             `slm distill cache` on this data"
        ))),
        None => Ok(cache),
    }
}

impl Objective for Distillation {
    fn prepare(
        &mut self,
        student: &FastModel,
        step: u64,
        micro: usize,
        inputs: &mut [u32],
        targets: &mut [u32],
    ) -> Result<()> {
        if let Some(p) = &self.on_policy {
            p.apply(student, step, micro, inputs, targets, self.seq_len)?;
        }
        Ok(())
    }

    fn forward_backward(&mut self, student: &mut FastModel, mb: &MicroBatch) -> Result<Loss> {
        let (x, y, b, t) = (mb.inputs, mb.targets, mb.batch, mb.seq);
        let l: DistillLoss = match &mut self.source {
            Source::Online(teacher, spec) => {
                let soft = teacher.logits(x, b, t)?; // [b, t, vocab]
                match &mut self.hidden {
                    None => student.forward_backward_distill(x, y, &soft, spec, b, t)?,
                    Some(h) => {
                        h.set_teacher(teacher.as_ref(), b * t)?;
                        student.forward_backward_hidden(x, y, Some((&soft, spec)), h, true, b, t)?
                    }
                }
            }
            Source::Offline {
                cache,
                weight,
                top: (ids, logp, tail),
            } => {
                cache.gather(mb.windows, ids, logp, tail)?;
                let top = TopK {
                    k: cache.header().k,
                    ids,
                    logp,
                    tail,
                };
                student.forward_backward_topk(x, y, &top, *weight, b, t)?
            }
        };
        let mut parts = vec![("ce", l.ce as f64), ("kd", l.kd as f64)];
        if self.hidden.is_some() {
            parts.push(("hidden", l.hidden as f64));
        }
        Ok(Loss {
            total: l.total as f64,
            parts,
        })
    }

    fn zero_grad(&mut self) {
        if let Some(h) = &mut self.hidden {
            h.zero_grad();
        }
    }

    fn scale_grads(&mut self, s: f32) {
        if let Some(h) = &mut self.hidden {
            h.scale_grads(s);
        }
    }

    fn step(&mut self, adam: &AdamWConfig, lr: f64) -> Result<()> {
        match &mut self.hidden {
            Some(h) => h.step(adam, lr),
            None => Ok(()),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        match &self.hidden {
            Some(h) => h.save(&dir.join(HIDDEN_PROJECTION)),
            None => Ok(()),
        }
    }

    fn load(&mut self, dir: &Path) -> Result<()> {
        match &mut self.hidden {
            Some(h) if h.projection().is_some() => h.load(&dir.join(HIDDEN_PROJECTION)),
            _ => Ok(()),
        }
    }
}
