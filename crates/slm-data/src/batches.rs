//! Batches of training windows drawn from a token shard in a seeded order.
//!
//! The shard is cut into non-overlapping windows of `seq + 1` tokens (inputs and the targets
//! shifted by one). Each epoch visits every window once in an order shuffled from the seed
//! and the epoch number, so the position `(epoch, index)` fully determines the next batch:
//! that is what a checkpoint records to resume exactly.

use crate::shards::Shard;
use slm_core::{Error, Result};

/// Where the batch stream stands (saved in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct BatchPosition {
    pub epoch: u64,
    /// Next window index within the epoch's order.
    pub index: u64,
}

pub struct BatchStream<'a> {
    shard: &'a Shard,
    seq: usize,
    batch: usize,
    seed: u64,
    order: Vec<u32>,
    pos: BatchPosition,
    /// Window ids of the last batch, row by row.
    last: Vec<u32>,
}

/// SplitMix64: a tiny, portable generator so the data order is the same everywhere.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `0..n` in an order shuffled (Fisher–Yates with [`splitmix`]) from `seed` and `epoch`.
pub(crate) fn shuffled(n: usize, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state = seed ^ epoch.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    for i in (1..n).rev() {
        let j = (splitmix(&mut state) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

impl<'a> BatchStream<'a> {
    pub fn new(
        shard: &'a Shard,
        batch: usize,
        seq: usize,
        seed: u64,
        pos: BatchPosition,
    ) -> Result<Self> {
        let windows = Self::window_count(shard, seq);
        if windows < batch {
            return Err(Error::invalid(format!(
                "{} has {} tokens: fewer than one batch of {batch} × {} tokens",
                shard.path().display(),
                shard.len(),
                seq + 1
            )));
        }
        let order = shuffled(windows, seed, pos.epoch);
        Ok(Self {
            shard,
            seq,
            batch,
            seed,
            order,
            pos,
            last: Vec::new(),
        })
    }

    pub fn window_count(shard: &Shard, seq: usize) -> usize {
        shard.len() / (seq + 1)
    }

    pub fn position(&self) -> BatchPosition {
        self.pos
    }

    /// The window ids (window w holds tokens `w·(seq+1) .. (w+1)·(seq+1)`) of the rows of the
    /// last batch: what an offline teacher cache is indexed by.
    pub fn last_windows(&self) -> &[u32] {
        &self.last
    }

    /// Fills `inputs` and `targets` (each batch × seq, row-major) with the next batch.
    pub fn next_batch(&mut self, inputs: &mut Vec<u32>, targets: &mut Vec<u32>) -> Result<()> {
        let (b, t) = (self.batch, self.seq);
        inputs.resize(b * t, 0);
        targets.resize(b * t, 0);
        let mut window = vec![0u32; t + 1];
        self.last.clear();
        for row in 0..b {
            if self.pos.index as usize >= self.order.len() {
                self.pos = BatchPosition {
                    epoch: self.pos.epoch + 1,
                    index: 0,
                };
                self.order = shuffled(self.order.len(), self.seed, self.pos.epoch);
            }
            let w = self.order[self.pos.index as usize] as usize;
            self.pos.index += 1;
            self.last.push(w as u32);
            self.shard.read_into(w * (t + 1), &mut window)?;
            inputs[row * t..(row + 1) * t].copy_from_slice(&window[..t]);
            targets[row * t..(row + 1) * t].copy_from_slice(&window[1..]);
        }
        Ok(())
    }
}

/// Every window of a shard in order, batched (for evaluation); the last batch may be short.
pub fn eval_windows(
    shard: &Shard,
    seq: usize,
    max_windows: usize,
) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
    let n = BatchStream::window_count(shard, seq).min(max_windows);
    let mut out = Vec::with_capacity(n);
    let mut window = vec![0u32; seq + 1];
    for w in 0..n {
        shard.read_into(w * (seq + 1), &mut window)?;
        out.push((window[..seq].to_vec(), window[1..].to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::{ShardWriter, TokenWidth};

    fn shard(n: u32) -> (tempfile::TempDir, Shard) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.bin");
        let mut w = ShardWriter::create(&p, TokenWidth::U16).unwrap();
        w.write(&(0..n).collect::<Vec<_>>()).unwrap();
        w.finish().unwrap();
        let s = Shard::open(&p).unwrap();
        (dir, s)
    }

    #[test]
    fn targets_are_inputs_shifted_and_order_is_seeded() {
        let (_d, s) = shard(1000);
        let mut a = BatchStream::new(&s, 4, 9, 7, BatchPosition::default()).unwrap();
        let (mut x, mut y) = (vec![], vec![]);
        a.next_batch(&mut x, &mut y).unwrap();
        for r in 0..4 {
            for i in 0..9 {
                assert_eq!(y[r * 9 + i], x[r * 9 + i] + 1);
            }
            assert_eq!(x[r * 9] % 10, 0); // windows start on multiples of seq+1
        }
        let mut b = BatchStream::new(&s, 4, 9, 7, BatchPosition::default()).unwrap();
        let (mut x2, mut y2) = (vec![], vec![]);
        b.next_batch(&mut x2, &mut y2).unwrap();
        assert_eq!(x, x2);
        let mut c = BatchStream::new(&s, 4, 9, 8, BatchPosition::default()).unwrap();
        c.next_batch(&mut x2, &mut y2).unwrap();
        assert_ne!(x, x2);
    }

    #[test]
    fn resuming_from_a_position_continues_the_same_stream() {
        let (_d, s) = shard(500);
        let mut full = BatchStream::new(&s, 3, 9, 1, BatchPosition::default()).unwrap();
        let (mut x, mut y) = (vec![], vec![]);
        let mut seen = vec![];
        for _ in 0..40 {
            full.next_batch(&mut x, &mut y).unwrap();
            seen.push(x.clone());
        }
        let mut first = BatchStream::new(&s, 3, 9, 1, BatchPosition::default()).unwrap();
        for _ in 0..25 {
            first.next_batch(&mut x, &mut y).unwrap();
        }
        let mut resumed = BatchStream::new(&s, 3, 9, 1, first.position()).unwrap();
        for want in &seen[25..] {
            resumed.next_batch(&mut x, &mut y).unwrap();
            assert_eq!(&x, want);
        }
        assert!(BatchStream::new(&s, 100, 9, 1, BatchPosition::default()).is_err());
    }
}
