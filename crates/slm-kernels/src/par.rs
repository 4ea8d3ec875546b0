//! Threading helpers: the thread count every kernel uses, the matching `gemm` parallelism,
//! row-chunk sizing that keeps small loops off the thread pool, and the raw pointer wrapper
//! the attention tasks write their disjoint strided outputs through.
//!
//! All parallel work runs on the current rayon pool (the global one sized by
//! `RAYON_NUM_THREADS` unless the caller installed another), and `gemm` is told the same
//! thread count, so one setting governs everything.

use gemm::Parallelism;

/// Threads of the current rayon pool.
pub fn num_threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Runs `f` on a worker thread of the current rayon pool (directly when already on one).
///
/// A parallel loop started from a thread outside the pool is injected into the pool, and the
/// caller sleeps on a lock until it is done: a decode step of a 30-layer model starts ~120
/// such loops, and the sleeps and wake-ups cost a quarter of a token's time on small models
/// (even with one thread). Started from a worker, the same loops split by work stealing, and
/// the idle workers, still spinning between loops, take their share without a wake-up —
/// what llama.cpp's persistent threadpool does for its graph. The caller sleeps once per
/// call instead of once per loop.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        f()
    } else {
        rayon::scope(|_| f())
    }
}

/// `gemm` parallelism using the current rayon pool's threads.
pub fn gemm_parallelism() -> Parallelism {
    match num_threads() {
        1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// Rows per parallel task for `rows` rows of `row_cost` elements of work each: at least
/// ~32k elements per task (below that the pool costs more than it saves), at most enough
/// tasks for four per thread. Always ≥ 1.
pub fn rows_per_task(rows: usize, row_cost: usize) -> usize {
    const MIN_WORK: usize = 32 * 1024;
    let min_rows = MIN_WORK.div_ceil(row_cost.max(1));
    let by_threads = rows.div_ceil(4 * num_threads());
    min_rows.max(by_threads).max(1)
}

/// A raw pointer that may cross threads. Used only where parallel tasks write provably
/// disjoint, strided parts of one buffer (which `&mut` slices cannot express); every use
/// states why the parts are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);

impl SendPtr {
    /// The pointer. (A method, so closures capture the whole `Send` wrapper rather than
    /// the raw-pointer field.)
    #[inline(always)]
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the pointer is only dereferenced by tasks that write disjoint elements while the
// owning `&mut` borrow is held by the spawning function, which waits for all tasks.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
