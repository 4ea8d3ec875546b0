//! Token embeddings: gather rows of the table forward, scatter-add gradients backward.
//!
//! The backward parallelises over blocks of columns, so rows repeated in a batch are summed
//! without races and in a fixed order.

use crate::check_len;
use rayon::prelude::*;
use slm_core::{Error, Result};

fn check_ids(ids: &[u32], vocab: usize) -> Result<()> {
    if let Some((i, &t)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
        return Err(Error::invalid(format!(
            "embedding: token id {t} at position {i} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

/// out[n, d] = table[ids[n], :] for table [vocab, d].
pub fn embedding_fwd(out: &mut [f32], table: &[f32], ids: &[u32], d: usize) -> Result<()> {
    check_len("embedding_fwd out", out.len(), ids.len() * d)?;
    if d == 0 {
        return Ok(());
    }
    if !table.len().is_multiple_of(d) {
        return Err(Error::invalid(format!(
            "embedding: table of {} is not [vocab, {d}]",
            table.len()
        )));
    }
    check_ids(ids, table.len() / d)?;
    for (row, &id) in out.chunks_exact_mut(d).zip(ids) {
        row.copy_from_slice(&table[id as usize * d..(id as usize + 1) * d]);
    }
    Ok(())
}

/// dtable[ids[n], :] += dout[n, :].
pub fn embedding_bwd(dtable: &mut [f32], dout: &[f32], ids: &[u32], d: usize) -> Result<()> {
    check_len("embedding_bwd dout", dout.len(), ids.len() * d)?;
    if d == 0 {
        return Ok(());
    }
    if !dtable.len().is_multiple_of(d) {
        return Err(Error::invalid(format!(
            "embedding: table of {} is not [vocab, {d}]",
            dtable.len()
        )));
    }
    check_ids(ids, dtable.len() / d)?;
    const BLOCK: usize = 64;
    let blocks = d.div_ceil(BLOCK);
    if blocks == 1 || ids.len() * d < 64 * 1024 {
        for (row, &id) in dout.chunks_exact(d).zip(ids) {
            let dst = &mut dtable[id as usize * d..(id as usize + 1) * d];
            dst.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        return Ok(());
    }
    let table = crate::par::SendPtr(dtable.as_mut_ptr());
    (0..blocks).into_par_iter().for_each(|blk| {
        let (c0, c1) = (blk * BLOCK, ((blk + 1) * BLOCK).min(d));
        for (row, &id) in dout.chunks_exact(d).zip(ids) {
            for (c, &g) in (c0..c1).zip(&row[c0..c1]) {
                // SAFETY: id < vocab was checked, so the element is inside dtable; block `blk`
                // owns columns [c0, c1) of every row, so tasks write disjoint elements.
                unsafe { *table.get().add(id as usize * d + c) += g };
            }
        }
    });
    Ok(())
}

/// Naive twin of [`embedding_bwd`].
pub fn embedding_bwd_naive(dtable: &mut [f32], dout: &[f32], ids: &[u32], d: usize) {
    for (n, &id) in ids.iter().enumerate() {
        for c in 0..d {
            dtable[id as usize * d + c] += dout[n * d + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assert_close, rand_vec};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn embedding_matches_naive(n in 1usize..600, d in 1usize..200, vocab in 1usize..50, seed in 0u64..1000) {
            let table = rand_vec(vocab * d, seed);
            let ids: Vec<u32> = (0..n).map(|i| ((i * 31 + seed as usize) % vocab) as u32).collect();
            let mut out = vec![0.0; n * d];
            embedding_fwd(&mut out, &table, &ids, d).unwrap();
            for (i, &id) in ids.iter().enumerate() {
                prop_assert_eq!(&out[i * d..(i + 1) * d], &table[id as usize * d..(id as usize + 1) * d]);
            }
            let dout = rand_vec(n * d, seed + 1);
            let (mut a, mut b) = (vec![0.5; vocab * d], vec![0.5; vocab * d]);
            embedding_bwd(&mut a, &dout, &ids, d).unwrap();
            embedding_bwd_naive(&mut b, &dout, &ids, d);
            assert_close(&a, &b, 1e-6, "dtable");
        }
    }

    #[test]
    fn bad_ids_are_errors() {
        let mut out = vec![0.0; 2];
        assert!(embedding_fwd(&mut out, &[0.0; 4], &[2], 2).is_err());
        assert!(embedding_bwd(&mut [0.0; 4], &[0.0; 2], &[2], 2).is_err());
    }
}
