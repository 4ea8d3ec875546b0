//! The teacher in distillation: a model queried for next-token logits (and, for the
//! hidden-state loss, its block outputs) without gradients, a batch at a time.
//!
//! [`Teacher`] is what online distillation ([`crate::Distillation`]), `slm distill cache`
//! and the hidden-state loss talk to. [`LocalTeacher`] is any model the foundation loads
//! (Hugging Face directory, HF cache id, GGUF, llama2.c), run on the training engine's
//! forward pass.

use slm_core::{Error, Result};
use slm_model::FlatModel;
use slm_model::Llama;
use slm_train::trainer::find_tokenizer;
use std::path::Path;

/// A model that scores batches for a student (see the module documentation).
pub trait Teacher: Send {
    /// Where it came from, for messages and cache headers.
    fn name(&self) -> &str;
    fn vocab_size(&self) -> usize;
    /// Longest sequence it can score.
    fn context(&self) -> usize;
    /// Decoder blocks and their width (for the hidden-state layer map).
    fn num_layers(&self) -> usize;
    fn hidden_size(&self) -> usize;
    /// Logits [batch, seq, vocab] (row-major) for `inputs` [batch, seq]; no gradients.
    fn logits(&mut self, inputs: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>>;
    /// Block `layer`'s output [batch·seq, hidden] from the last [`Teacher::logits`] call.
    fn block_output(&self, layer: usize) -> Result<&[f32]>;
}

/// A local model as teacher.
#[derive(Debug)]
pub struct LocalTeacher {
    name: String,
    /// The shared forward only: a frozen teacher needs no gradient buffer or backward scratch.
    model: FlatModel,
}

impl LocalTeacher {
    /// Wraps a loaded model.
    pub fn new(name: impl Into<String>, model: &Llama) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            model: FlatModel::from_llama(model)?,
        })
    }

    /// Loads a teacher by the usual model spec (HF directory, cache id, .gguf, llama2.c .bin).
    pub fn load(spec: &str) -> Result<Self> {
        let loaded = slm_model::load(spec, None)?;
        Self::new(spec, &loaded.model)
    }

    /// Loads the teacher `spec` (with `tokenizer` for a model that carries none, such as a
    /// llama2.c checkpoint) and checks that its tokenizer is the one the data folder `data`
    /// was prepared with, id by id.
    pub fn load_for_data(spec: &str, tokenizer: Option<&Path>, data: &Path) -> Result<Self> {
        let loaded = slm_model::load(spec, tokenizer)?;
        let teacher_tok = match slm_data::tokenizer::load_tokenizer(&loaded.tokenizer) {
            Err(Error::Tokenizer(e)) => {
                return Err(Error::Tokenizer(format!(
                    "the teacher `{spec}`: {e} (pass the teacher's tokenizer)"
                )))
            }
            t => t?,
        };
        if teacher_tok.vocab_size() > loaded.model.config.vocab_size {
            return Err(Error::config(format!(
                "the tokenizer of the teacher `{spec}` has {} tokens but its vocabulary is {}: \
                 wrong teacher tokenizer?",
                teacher_tok.vocab_size(),
                loaded.model.config.vocab_size
            )));
        }
        let Some(data_tok_path) = find_tokenizer(data) else {
            return Err(Error::config(format!(
                "{} holds no tokenizer: is it a folder made by `slm data prepare`?",
                data.display()
            )));
        };
        let data_tok = slm_data::tokenizer::load_tokenizer_file(&data_tok_path)?;
        crate::vocab::check_same_vocabulary(
            teacher_tok.as_ref(),
            spec,
            data_tok.as_ref(),
            &data_tok_path.display().to_string(),
        )?;
        Self::new(spec, &loaded.model)
    }

    /// Checks this teacher can score a student's batches: same vocabulary size, enough
    /// context.
    pub fn check_fits(&self, student_vocab: usize, seq_len: usize) -> Result<()> {
        check_fits(self, student_vocab, seq_len)
    }
}

/// Fails with a message naming the teacher unless it shares the student's vocabulary size
/// and covers `seq_len`.
pub fn check_fits(t: &dyn Teacher, student_vocab: usize, seq_len: usize) -> Result<()> {
    let tv = t.vocab_size();
    if tv != student_vocab {
        return Err(Error::config(format!(
            "the teacher {} has a vocabulary of {tv} tokens, the student {student_vocab}: \
             logit distillation needs the same tokenizer",
            t.name()
        )));
    }
    if seq_len > t.context() {
        return Err(Error::config(format!(
            "seq_len {seq_len} exceeds the teacher's context {}",
            t.context()
        )));
    }
    Ok(())
}

impl Teacher for LocalTeacher {
    fn name(&self) -> &str {
        &self.name
    }
    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }
    fn context(&self) -> usize {
        self.model.config().max_position_embeddings
    }
    fn num_layers(&self) -> usize {
        self.model.config().num_hidden_layers
    }
    fn hidden_size(&self) -> usize {
        self.model.config().hidden_size
    }
    fn logits(&mut self, inputs: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>> {
        self.model.logits(inputs, batch, seq)
    }
    fn block_output(&self, layer: usize) -> Result<&[f32]> {
        self.model.block_output(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slm_train::FastModel;

    #[test]
    fn local_teacher_scores_like_its_model_and_checks_fit() {
        let mut cfg = slm_model::preset("260k").unwrap();
        cfg.vocab_size = 32;
        cfg.num_hidden_layers = 2;
        cfg.max_position_embeddings = 16;
        let llama = Llama::random(cfg, 3, &candle_core::Device::Cpu).unwrap();
        let mut t = LocalTeacher::new("random", &llama).unwrap();
        let inputs: Vec<u32> = (0..12).map(|i| (i * 5 % 32) as u32).collect();
        let a = t.logits(&inputs, 2, 6).unwrap();
        let b = FastModel::from_llama(&llama)
            .unwrap()
            .logits(&inputs, 2, 6)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(t.block_output(1).unwrap().len(), 12 * 64);
        assert!(t.block_output(2).is_err());
        assert!(t.check_fits(32, 16).is_ok());
        let e = t.check_fits(33, 8).unwrap_err().to_string();
        assert!(e.contains("random") && e.contains("32"), "{e}");
        assert!(t.check_fits(32, 17).is_err());
    }
}
