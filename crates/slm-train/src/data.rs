//! What the trainer draws its batches from: a [`TrainData`] gives a seeded, resumable
//! stream of training micro-batches and a fixed list of evaluation batches.
//!
//! Two sources exist: [`Shards`], the token shards of `slm data prepare` (windows of
//! `seq + 1` tokens, plain pre-training), and `slm_data::sft::Packed` rows (fine-tuning:
//! whole examples packed into rows, the loss only on the tokens that are trained, attention
//! and positions reset at each example boundary through `starts`).

use slm_core::{Error, Result};
use slm_data::batches::{eval_windows, BatchPosition, BatchStream};
use slm_data::prepare::{TRAIN_SHARD, VAL_SHARD};
use slm_data::sft::{eval_batches, Packed, PackedStream};
use slm_data::shards::Shard;
use std::path::Path;
use std::sync::Arc;

/// One micro-batch, [rows, seq] row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub inputs: Vec<u32>,
    /// `u32::MAX` (`slm_kernels::IGNORE_INDEX`) where no loss is taken.
    pub targets: Vec<u32>,
    /// Per position, where its example begins in its row (packed rows); `None` for plain
    /// causal windows.
    pub starts: Option<Vec<u32>>,
    /// The shard windows the rows were cut from (what an offline teacher cache is indexed
    /// by); empty for sources without windows.
    pub windows: Vec<u32>,
    pub rows: usize,
}

/// A stream of training micro-batches at a resumable position.
pub trait BatchSource {
    /// Fills `batch` with the next micro-batch.
    fn next(&mut self, batch: &mut Batch) -> Result<()>;
    /// Where the stream stands (saved in checkpoints).
    fn position(&self) -> BatchPosition;
}

/// Training and evaluation data for [`crate::Trainer`].
pub trait TrainData: Send + Sync {
    /// The training stream of `batch` rows of `seq` tokens from `pos`, in an order drawn from
    /// `seed`; an error if the data cannot fill one batch.
    fn stream<'a>(
        &'a self,
        batch: usize,
        seq: usize,
        seed: u64,
        pos: BatchPosition,
    ) -> Result<Box<dyn BatchSource + 'a>>;

    /// Evaluation batches of at most `batch` rows covering at most `max_rows` rows, always
    /// the same ones; an error if there is nothing to evaluate on.
    fn eval_batches(&self, batch: usize, seq: usize, max_rows: usize) -> Result<Vec<Batch>>;
}

/// The train and validation shards of a folder made by `slm data prepare`.
pub struct Shards {
    pub train: Shard,
    pub val: Shard,
}

impl Shards {
    pub fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            train: Shard::open(&dir.join(TRAIN_SHARD))?,
            val: Shard::open(&dir.join(VAL_SHARD))?,
        })
    }
}

struct ShardStream<'a>(BatchStream<'a>);

impl BatchSource for ShardStream<'_> {
    fn next(&mut self, b: &mut Batch) -> Result<()> {
        self.0.next_batch(&mut b.inputs, &mut b.targets)?;
        b.starts = None;
        b.windows.clear();
        b.windows.extend_from_slice(self.0.last_windows());
        b.rows = b.windows.len();
        Ok(())
    }

    fn position(&self) -> BatchPosition {
        self.0.position()
    }
}

impl TrainData for Shards {
    fn stream<'a>(
        &'a self,
        batch: usize,
        seq: usize,
        seed: u64,
        pos: BatchPosition,
    ) -> Result<Box<dyn BatchSource + 'a>> {
        Ok(Box::new(ShardStream(BatchStream::new(
            &self.train,
            batch,
            seq,
            seed,
            pos,
        )?)))
    }

    fn eval_batches(&self, batch: usize, seq: usize, max_rows: usize) -> Result<Vec<Batch>> {
        let windows = eval_windows(&self.val, seq, max_rows)?;
        if windows.is_empty() {
            return Err(Error::invalid(format!(
                "the validation shard has fewer than {} tokens: no window to evaluate",
                seq + 1
            )));
        }
        Ok(windows
            .chunks(batch)
            .map(|chunk| Batch {
                inputs: chunk.iter().flat_map(|(x, _)| x.iter().copied()).collect(),
                targets: chunk.iter().flat_map(|(_, y)| y.iter().copied()).collect(),
                starts: None,
                windows: Vec::new(),
                rows: chunk.len(),
            })
            .collect())
    }
}

/// Packed fine-tuning rows (`slm_data::sft::prepare`): the training rows and, when examples
/// were held out, the evaluation rows.
#[derive(Debug)]
pub struct PackedData {
    pub train: Arc<Packed>,
    pub eval: Option<Packed>,
}

struct PackedSource(PackedStream);

impl BatchSource for PackedSource {
    fn next(&mut self, b: &mut Batch) -> Result<()> {
        let starts = b.starts.get_or_insert_with(Vec::new);
        self.0.next_batch(&mut b.inputs, &mut b.targets, starts)?;
        b.windows.clear();
        b.rows = self.0.batch();
        Ok(())
    }

    fn position(&self) -> BatchPosition {
        self.0.position()
    }
}

impl TrainData for PackedData {
    fn stream<'a>(
        &'a self,
        batch: usize,
        seq: usize,
        seed: u64,
        pos: BatchPosition,
    ) -> Result<Box<dyn BatchSource + 'a>> {
        if seq != self.train.seq {
            return Err(Error::invalid(format!(
                "the rows were packed to {} positions, the run trains on {seq}",
                self.train.seq
            )));
        }
        Ok(Box::new(PackedSource(PackedStream::new(
            self.train.clone(),
            batch,
            seed,
            pos,
        )?)))
    }

    /// The held-out rows (none: an empty list, and the trainer skips evaluation).
    fn eval_batches(&self, batch: usize, _seq: usize, max_rows: usize) -> Result<Vec<Batch>> {
        let Some(eval) = &self.eval else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut rows = 0;
        for b in eval_batches(eval, batch)? {
            if rows >= max_rows {
                break;
            }
            rows += b.rows;
            out.push(Batch {
                inputs: b.inputs,
                targets: b.targets,
                starts: Some(b.starts),
                windows: Vec::new(),
                rows: b.rows,
            });
        }
        Ok(out)
    }
}
