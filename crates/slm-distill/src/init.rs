//! Student initialisation from the teacher (DistilBERT): a student with every k-th block of
//! the teacher (blocks 0, k, 2k, ...), the teacher's embeddings, final norm and head, so it
//! starts from the teacher's representation instead of from noise.

use candle_core::Tensor;
use slm_core::{Error, Result};
use slm_model::Llama;
use std::collections::HashMap;
use std::path::Path;

/// Writes the student [`every_kth_layer`] makes from the teacher `spec` (with `tokenizer`
/// for a model that carries none) to `dir` as a model directory, provenance in `slm.json`;
/// returns (student blocks, teacher blocks).
pub fn write_every_kth_layer(
    spec: &str,
    tokenizer: Option<&Path>,
    k: usize,
    dir: &Path,
) -> Result<(usize, usize)> {
    let teacher = slm_model::load(spec, tokenizer)?.model;
    let student = every_kth_layer(&teacher, k)?;
    let meta = serde_json::json!({"stage": "student-init", "teacher": spec, "every": k});
    slm_model::save(
        &student,
        dir,
        &[("slm.json", serde_json::to_vec_pretty(&meta)?)],
    )?;
    Ok((
        student.config.num_hidden_layers,
        teacher.config.num_hidden_layers,
    ))
}

/// The teacher's blocks 0, k, 2k, ... renumbered 0, 1, 2, ...; everything else copied.
pub fn every_kth_layer(teacher: &Llama, k: usize) -> Result<Llama> {
    let layers = teacher.config.num_hidden_layers;
    if k == 0 || k > layers {
        return Err(Error::invalid(format!(
            "keeping every {k}-th layer of a {layers}-layer teacher: k must be in 1..={layers}"
        )));
    }
    let kept: Vec<usize> = (0..layers).step_by(k).collect();
    let mut cfg = teacher.config.clone();
    cfg.num_hidden_layers = kept.len();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in teacher.tensors() {
        match name.strip_prefix("model.layers.") {
            None => {
                tensors.insert(name, t);
            }
            Some(rest) => {
                let (idx, tail) = rest.split_once('.').ok_or_else(|| {
                    Error::msg(format!("unexpected tensor name `{name}` (internal error)"))
                })?;
                let idx: usize = idx.parse().map_err(|_| {
                    Error::msg(format!("unexpected tensor name `{name}` (internal error)"))
                })?;
                if let Some(j) = kept.iter().position(|&l| l == idx) {
                    tensors.insert(format!("model.layers.{j}.{tail}"), t);
                }
            }
        }
    }
    Llama::from_tensors(cfg, tensors, Path::new("<every_kth_layer>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn keeps_blocks_zero_k_2k_and_everything_else() {
        let mut cfg = slm_model::preset("260k").unwrap();
        cfg.num_hidden_layers = 5;
        let teacher = Llama::random(cfg, 3, &Device::Cpu).unwrap();
        let student = every_kth_layer(&teacher, 2).unwrap();
        assert_eq!(student.config.num_hidden_layers, 3); // blocks 0, 2, 4
        let t: HashMap<String, Tensor> = teacher.tensors().into_iter().collect();
        let s: HashMap<String, Tensor> = student.tensors().into_iter().collect();
        let same = |a: &Tensor, b: &Tensor| {
            a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        for (j, l) in [(0, 0), (1, 2), (2, 4)] {
            let n = |i| format!("model.layers.{i}.mlp.down_proj.weight");
            assert!(
                same(&s[&n(j)], &t[&n(l)]),
                "student block {j} is not teacher block {l}"
            );
        }
        assert!(same(
            &s["model.embed_tokens.weight"],
            &t["model.embed_tokens.weight"]
        ));
        assert!(every_kth_layer(&teacher, 0).is_err());
        assert!(every_kth_layer(&teacher, 6).is_err());
        assert_eq!(
            every_kth_layer(&teacher, 1)
                .unwrap()
                .config
                .num_hidden_layers,
            5
        );
    }
}
