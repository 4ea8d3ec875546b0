//! Batches of packed rows for the trainer ([`PackedStream`]) and for evaluation
//! ([`eval_batches`]).
//!
//! Training visits every row once per epoch in an order shuffled from the seed and the epoch
//! (the splitmix shuffle of `crate::batches`), so `(epoch, index)` ([`BatchPosition`]) fully
//! determines the next batch: a checkpoint records it and a stream made at that position
//! continues exactly. Evaluation covers every row once, in order, the last batch possibly
//! short.

use std::sync::Arc;

use slm_core::{Error, Result};

use super::pack::Packed;
use crate::batches::{shuffled, BatchPosition};

/// Training batches of `batch` rows drawn from packed rows.
pub struct PackedStream {
    packed: Arc<Packed>,
    batch: usize,
    seed: u64,
    order: Vec<u32>,
    pos: BatchPosition,
    /// Row ids of the last batch.
    last: Vec<u32>,
}

impl PackedStream {
    /// A stream at `pos` (the default to start; a checkpoint's [`Self::position`] to resume).
    /// Needs at least `batch` rows.
    pub fn new(packed: Arc<Packed>, batch: usize, seed: u64, pos: BatchPosition) -> Result<Self> {
        let rows = packed.rows();
        if batch == 0 || rows < batch {
            return Err(Error::invalid(format!(
                "the fine-tuning data packs into {rows} rows of {} positions: fewer than one \
                 batch of {batch} (lower the batch size or the sequence length, or add data)",
                packed.seq
            )));
        }
        if pos.index as usize > rows {
            return Err(Error::invalid(format!(
                "the saved data position (epoch {}, row {}) is past the {rows} rows of this \
                 data: was it changed since the checkpoint?",
                pos.epoch, pos.index
            )));
        }
        let order = shuffled(rows, seed, pos.epoch);
        Ok(Self {
            packed,
            batch,
            seed,
            order,
            pos,
            last: Vec::new(),
        })
    }

    /// Rows visited per epoch (all of them).
    pub fn rows_per_epoch(&self) -> usize {
        self.order.len()
    }

    pub fn position(&self) -> BatchPosition {
        self.pos
    }

    pub fn seq(&self) -> usize {
        self.packed.seq
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The packed rows.
    pub fn packed(&self) -> &Packed {
        &self.packed
    }

    /// Row ids of the last batch, in batch order.
    pub fn last_rows(&self) -> &[u32] {
        &self.last
    }

    /// Fills `inputs`, `targets` and `starts` (each `[batch, seq]`, row-major) with the next
    /// batch; an epoch ends after its last row and the next begins with a new order.
    pub fn next_batch(
        &mut self,
        inputs: &mut Vec<u32>,
        targets: &mut Vec<u32>,
        starts: &mut Vec<u32>,
    ) -> Result<()> {
        let (b, t) = (self.batch, self.packed.seq);
        inputs.resize(b * t, 0);
        targets.resize(b * t, 0);
        starts.resize(b * t, 0);
        self.last.clear();
        for i in 0..b {
            if self.pos.index as usize >= self.order.len() {
                self.pos = BatchPosition {
                    epoch: self.pos.epoch + 1,
                    index: 0,
                };
                self.order = shuffled(self.order.len(), self.seed, self.pos.epoch);
            }
            let r = self.order[self.pos.index as usize];
            self.pos.index += 1;
            self.last.push(r);
            let row = self.packed.row(r as usize);
            let span = i * t..(i + 1) * t;
            inputs[span.clone()].copy_from_slice(row.inputs);
            targets[span.clone()].copy_from_slice(row.targets);
            starts[span].copy_from_slice(row.starts);
        }
        Ok(())
    }
}

/// One evaluation batch: `rows` rows, each array `[rows, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalBatch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
    pub starts: Vec<u32>,
    pub rows: usize,
}

/// Every row of `packed` once, in order, `batch` rows at a time (the last batch may be
/// short).
pub fn eval_batches(packed: &Packed, batch: usize) -> Result<impl Iterator<Item = EvalBatch> + '_> {
    if batch == 0 {
        return Err(Error::invalid("an evaluation batch of 0 rows"));
    }
    let seq = packed.seq;
    Ok((0..packed.rows()).step_by(batch).map(move |first| {
        let rows = batch.min(packed.rows() - first);
        let span = first * seq..(first + rows) * seq;
        EvalBatch {
            inputs: packed.inputs[span.clone()].to_vec(),
            targets: packed.targets[span.clone()].to_vec(),
            starts: packed.starts[span].to_vec(),
            rows,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::pack::tests::ex;
    use super::super::pack::{pack, Packing};
    use super::*;

    fn packed(n: usize) -> Arc<Packed> {
        let exs: Vec<_> = (0..n as u32).map(|k| ex(k * 100, 5, 1)).collect();
        Arc::new(pack(&exs, 4, Packing::Off, 0).unwrap())
    }

    #[test]
    fn epochs_visit_every_row_in_a_seeded_order() {
        let p = packed(10);
        let mut s = PackedStream::new(p.clone(), 2, 3, BatchPosition::default()).unwrap();
        assert_eq!(s.rows_per_epoch(), 10);
        let (mut x, mut y, mut z) = (vec![], vec![], vec![]);
        let mut epoch0 = vec![];
        for _ in 0..5 {
            s.next_batch(&mut x, &mut y, &mut z).unwrap();
            assert_eq!(x.len(), 8);
            for (i, &r) in s.last_rows().iter().enumerate() {
                let row = p.row(r as usize);
                assert_eq!(&x[i * 4..(i + 1) * 4], row.inputs);
                assert_eq!(&y[i * 4..(i + 1) * 4], row.targets);
                assert_eq!(&z[i * 4..(i + 1) * 4], row.starts);
            }
            epoch0.extend_from_slice(s.last_rows());
        }
        let mut sorted = epoch0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
        assert_ne!(epoch0, sorted, "shuffled");
        s.next_batch(&mut x, &mut y, &mut z).unwrap();
        assert_eq!(s.position(), BatchPosition { epoch: 1, index: 2 });
        // Another seed, another order.
        let mut o = PackedStream::new(p.clone(), 10, 4, BatchPosition::default()).unwrap();
        o.next_batch(&mut x, &mut y, &mut z).unwrap();
        assert_ne!(o.last_rows(), &epoch0[..]);

        assert!(PackedStream::new(p.clone(), 11, 3, BatchPosition::default()).is_err());
        assert!(PackedStream::new(p.clone(), 0, 3, BatchPosition::default()).is_err());
        let past = BatchPosition {
            epoch: 0,
            index: 11,
        };
        assert!(PackedStream::new(p, 2, 3, past).is_err());
    }

    #[test]
    fn a_stream_made_at_a_position_continues_identically() {
        let p = packed(7);
        let (mut x, mut y, mut z) = (vec![], vec![], vec![]);
        let mut full = PackedStream::new(p.clone(), 3, 9, BatchPosition::default()).unwrap();
        let mut seen = vec![];
        for _ in 0..20 {
            full.next_batch(&mut x, &mut y, &mut z).unwrap();
            seen.push((x.clone(), y.clone(), z.clone()));
        }
        let mut first = PackedStream::new(p.clone(), 3, 9, BatchPosition::default()).unwrap();
        for _ in 0..8 {
            first.next_batch(&mut x, &mut y, &mut z).unwrap();
        }
        let mut resumed = PackedStream::new(p, 3, 9, first.position()).unwrap();
        for want in &seen[8..] {
            resumed.next_batch(&mut x, &mut y, &mut z).unwrap();
            assert_eq!(&(x.clone(), y.clone(), z.clone()), want);
        }
    }

    #[test]
    fn eval_batches_cover_every_row_once_in_order() {
        let p = packed(7);
        let batches: Vec<EvalBatch> = eval_batches(&p, 3).unwrap().collect();
        assert_eq!(
            batches.iter().map(|b| b.rows).collect::<Vec<_>>(),
            [3, 3, 1]
        );
        let inputs: Vec<u32> = batches.iter().flat_map(|b| b.inputs.clone()).collect();
        assert_eq!(inputs, p.inputs);
        let starts: Vec<u32> = batches.iter().flat_map(|b| b.starts.clone()).collect();
        assert_eq!(starts, p.starts);
        let targets: Vec<u32> = batches.iter().flat_map(|b| b.targets.clone()).collect();
        assert_eq!(targets, p.targets);
        assert!(eval_batches(&p, 0).is_err());
    }
}
