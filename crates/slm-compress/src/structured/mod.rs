//! Structured pruning: removing whole layers, attention heads (GQA-aware), MLP channels and
//! hidden channels, so the model really shrinks (Minitron, Sheared-LLaMA, ShortGPT).
//!
//! - [`importance`]: how much each unit matters, measured on calibration text;
//! - [`shape`]: what a pruned model keeps, its parameter count, the shapes refused, and the
//!   candidate shapes for a parameter target;
//! - [`plan`]: which units are kept (from importance, or at random as a control) and the
//!   slicing into a smaller dense model;
//! - [`search`] here: Minitron's candidate search without retraining — each candidate shape
//!   is pruned and scored by its calibration loss, the lowest wins.
//!
//! Recovery (distillation from the parent) is a training run: `slm-recipes` chains the two.

pub mod importance;
pub mod plan;
pub mod shape;

pub use importance::{calibration_loss, measure, Aggregate, Importance, LayerMetric};
pub use plan::Plan;
pub use shape::{candidates, parse_target, Shape};

use serde::Serialize;
use slm_core::Result;
use slm_model::Llama;

/// One candidate of a parameter-target search.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// How it reaches the target: depth, mlp, heads+mlp, hidden, depth+mlp.
    pub name: String,
    pub shape: Shape,
    pub non_embedding_params: usize,
    pub total_params: usize,
    /// Mean calibration loss (nats per token) of the pruned model, before any recovery.
    pub loss: f64,
}

/// Prunes `model` to each candidate shape for `target` non-embedding parameters (units
/// chosen by `imp`), scores each by its mean loss on `windows`, and returns the candidates
/// with the index of the lowest loss. `progress(done, total)` after each candidate.
pub fn search(
    model: &Llama,
    imp: &Importance,
    metric: LayerMetric,
    target: usize,
    windows: &[Vec<u32>],
    batch: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(usize, Vec<Candidate>)> {
    let parent = &model.config;
    let shapes = candidates(parent, target);
    if shapes.is_empty() {
        return Err(slm_core::Error::invalid(format!(
            "no shape of this model has about {target} non-embedding parameters"
        )));
    }
    let mut out = Vec::with_capacity(shapes.len());
    progress(0, shapes.len());
    for (i, (name, shape)) in shapes.into_iter().enumerate() {
        let plan = Plan::from_importance(imp, parent, &shape, metric)?;
        let pruned = plan.apply(model)?;
        let loss = calibration_loss(&pruned, windows, batch)?;
        out.push(Candidate {
            name,
            shape,
            non_embedding_params: shape.non_embedding_params(parent),
            total_params: shape.total_params(parent),
            loss,
        });
        progress(i + 1, out.capacity());
    }
    let best = (0..out.len())
        .min_by(|&a, &b| out[a].loss.total_cmp(&out[b].loss))
        .unwrap_or(0);
    Ok((best, out))
}
