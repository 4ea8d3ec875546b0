//! The per-layer methods against the PyTorch reference (tools/reference/prune_reference.py):
//! one fixed layer W [24, 64] with calibration input X [200, 64] (spread column scales,
//! correlated columns, one dead column). Masks must equal the reference's, SparseGPT's
//! weights match within 1e-4 relative, reconstruction errors within 1e-3 relative.

use candle_core::{Device, Tensor};
use faer::Mat;
use serde_json::Value;
use slm_compress::gram::gram_f64;
use slm_compress::{
    check_nm, magnitude_mask, obd_layerwise_saliency, obd_mask, reconstruction_error,
    sparsegpt_prune, wanda_mask, InputStats, Pattern, SparseGptOptions,
};
use std::collections::HashMap;
use std::path::PathBuf;

const OUT: usize = 24;
const IN: usize = 64;
const N: usize = 200;

struct Fixture {
    t: HashMap<String, Tensor>,
    json: Value,
    w: Vec<f32>,
    x: Vec<f32>,
    gram: Mat<f64>,
}

fn fixture() -> Fixture {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/prune");
    let t = candle_core::safetensors::load(dir.join("layer.safetensors"), &Device::Cpu).unwrap();
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("layer.json")).unwrap()).unwrap();
    let w = t["W"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let x = t["X"].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!((w.len(), x.len()), (OUT * IN, N * IN));
    let gram = gram_f64(&x, N, IN).unwrap();
    Fixture {
        t,
        json,
        w,
        x,
        gram,
    }
}

impl Fixture {
    fn mask(&self, name: &str) -> Vec<bool> {
        self.t[&format!("{name}.mask")]
            .flatten_all()
            .unwrap()
            .to_vec1::<u8>()
            .unwrap()
            .into_iter()
            .map(|v| v == 1)
            .collect()
    }

    fn error(&self, name: &str) -> f64 {
        self.json["errors"][name].as_f64().unwrap()
    }

    fn col_sq(&self) -> Vec<f64> {
        (0..IN).map(|j| self.gram[(j, j)]).collect()
    }

    fn masked_error(&self, mask: &[bool]) -> f64 {
        let wn: Vec<f32> = self
            .w
            .iter()
            .zip(mask)
            .map(|(&x, &p)| if p { 0.0 } else { x })
            .collect();
        reconstruction_error(&self.w, &wn, OUT, IN, self.gram.as_ref()).unwrap()
    }
}

fn patterns() -> [(&'static str, Pattern); 3] {
    [
        ("unstructured", Pattern::Unstructured),
        ("2:4", Pattern::NM { n: 2, m: 4 }),
        ("4:8", Pattern::NM { n: 4, m: 8 }),
    ]
}

fn assert_rel(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1e-12),
        "{what}: {a} vs reference {b}"
    );
}

fn mask_diff(a: &[bool], b: &[bool]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x != y).count()
}

#[test]
fn magnitude_masks_match_reference() {
    let f = fixture();
    for (p, pattern) in patterns() {
        let name = format!("magnitude.{p}");
        let m = magnitude_mask(&f.w, OUT, IN, pattern, 0.5).unwrap();
        assert_eq!(mask_diff(&m, &f.mask(&name)), 0, "{name}");
        assert_rel(f.masked_error(&m), f.error(&name), 1e-3, &name);
    }
}

#[test]
fn wanda_masks_match_reference() {
    let f = fixture();
    let col_sq = f.col_sq();
    for (p, pattern) in patterns() {
        let name = format!("wanda.{p}");
        let m = wanda_mask(&f.w, OUT, IN, &col_sq, pattern, 0.5).unwrap();
        assert_eq!(mask_diff(&m, &f.mask(&name)), 0, "{name}");
        assert_rel(f.masked_error(&m), f.error(&name), 1e-3, &name);
        if pattern == Pattern::Unstructured {
            // 32 of 64 in every row.
            assert!(m.chunks(IN).all(|r| r.iter().filter(|&&p| p).count() == 32));
        }
    }
}

#[test]
fn layerwise_obd_mask_matches_reference() {
    let f = fixture();
    let s = obd_layerwise_saliency(&f.w, OUT, IN, &f.col_sq()).unwrap();
    let m = obd_mask(&s, OUT, IN, Pattern::Unstructured, 0.5).unwrap();
    let name = "obd_layerwise.unstructured";
    assert_eq!(mask_diff(&m, &f.mask(name)), 0);
    assert_rel(f.masked_error(&m), f.error(name), 1e-3, name);
}

fn sparsegpt(f: &Fixture, gram: &Mat<f64>, pattern: Pattern) -> slm_compress::SparseGptOutput {
    let opts = SparseGptOptions {
        pattern,
        sparsity: 0.5,
        block_size: 32,
        damp: 0.01,
    };
    // The reference's H = 2/n · XᵀX over its n = 200 rows.
    let h = faer::Scale(2.0 / N as f64) * gram;
    sparsegpt_prune(&f.w, OUT, IN, h.as_ref(), &opts).unwrap()
}

#[test]
fn sparsegpt_matches_reference() {
    let f = fixture();
    for (p, pattern) in patterns() {
        let name = format!("sparsegpt.{p}");
        let out = sparsegpt(&f, &f.gram, pattern);
        assert_eq!(mask_diff(&out.mask, &f.mask(&name)), 0, "{name} mask");
        let want = f.t[&format!("{name}.weight")]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let scale = want.iter().fold(0f32, |a, &b| a.max(b.abs())) as f64;
        let max_diff = out
            .weight
            .iter()
            .zip(&want)
            .fold(0f64, |a, (&x, &y)| a.max((x as f64 - y as f64).abs()));
        assert!(
            max_diff <= 1e-4 * scale,
            "{name}: max diff {max_diff} (scale {scale})"
        );
        // Pruned entries are exactly zero, the others are not.
        for (&x, &m) in out.weight.iter().zip(&out.mask) {
            assert_eq!(x == 0.0, m, "{name}");
        }
        let e = reconstruction_error(&f.w, &out.weight, OUT, IN, f.gram.as_ref()).unwrap();
        assert_rel(e, f.error(&name), 1e-3, &name);
        if let Pattern::NM { n, m } = pattern {
            assert!(check_nm(&out.mask, OUT, IN, n, m), "{name}");
            for g in out.weight.chunks(m) {
                assert!(g.iter().filter(|&&x| x != 0.0).count() <= n);
            }
        }
        // The dead column (7) is zeroed.
        assert!((0..OUT).all(|r| out.weight[r * IN + 7] == 0.0));
    }
}

/// The bounded-memory f32 Gram (batched, as calibration accumulates it) gives the same
/// SparseGPT masks and near-identical weights.
#[test]
fn sparsegpt_with_batched_f32_gram() {
    let f = fixture();
    let mut s = InputStats::new(IN, true);
    for chunk in f.x.chunks(64 * IN) {
        s.add_rows(chunk, chunk.len() / IN).unwrap();
    }
    let g = s.gram().unwrap();
    for (p, pattern) in patterns() {
        let name = format!("sparsegpt.{p}");
        let out = sparsegpt(&f, &g, pattern);
        assert_eq!(mask_diff(&out.mask, &f.mask(&name)), 0, "{name} mask");
        let e = reconstruction_error(&f.w, &out.weight, OUT, IN, f.gram.as_ref()).unwrap();
        assert_rel(e, f.error(&name), 1e-3, &name);
    }
}

#[test]
fn error_order_on_the_fixture() {
    let f = fixture();
    let col_sq = f.col_sq();
    for (p, pattern) in patterns() {
        let mag = f.masked_error(&magnitude_mask(&f.w, OUT, IN, pattern, 0.5).unwrap());
        let wanda = f.masked_error(&wanda_mask(&f.w, OUT, IN, &col_sq, pattern, 0.5).unwrap());
        let sg = sparsegpt(&f, &f.gram, pattern);
        let sg = reconstruction_error(&f.w, &sg.weight, OUT, IN, f.gram.as_ref()).unwrap();
        assert!(
            sg < wanda && wanda < mag,
            "{p}: sparsegpt {sg}, wanda {wanda}, magnitude {mag}"
        );
    }
}
