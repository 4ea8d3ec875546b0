//! The corpus's own tiny seeded random number generator (SplitMix64).
//!
//! Part of the built-in demo corpus (a toy for `slm quickstart`, not a benchmark).
//! We write our own generator instead of using `rand` so that a seed gives byte-identical
//! stories on every platform, every compiler and every version of every crate: SplitMix64
//! is a fixed, public algorithm of a few lines.

/// SplitMix64: a 64-bit state advanced by a constant and mixed on output.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator for item `index` of the stream named by `seed`: story `i` depends only on
    /// `(seed, i)`, so asking for more stories never changes the earlier ones.
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut base = Rng::new(seed ^ 0x5EED_C0DE_5EED_C0DE);
        let a = base.next_u64();
        let mut mixed = Rng::new(a ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let b = mixed.next_u64();
        Rng::new(b)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (0 when `n` is 0), by the multiply-shift method.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.below(100) < percent as usize
    }

    /// One element of `items`, uniformly; `T::default()` if `items` is empty (never panics).
    pub fn pick<T: Copy + Default>(&mut self, items: &[T]) -> T {
        let i = self.below(items.len());
        items.get(i).copied().unwrap_or_default()
    }

    /// `k` distinct indices into a list of length `n` (fewer if `n < k`), in random order.
    pub fn distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        let take = k.min(n);
        for i in 0..take {
            let j = i + self.below(n - i);
            all.swap(i, j);
        }
        all.truncate(take);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_rng_is_fixed_by_seed() {
        // SplitMix64 reference values for seed 0 (from the published algorithm).
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut a = Rng::for_item(7, 3);
        let mut b = Rng::for_item(7, 3);
        let mut c = Rng::for_item(7, 4);
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn corpus_rng_helpers_stay_in_range() {
        let mut r = Rng::new(42);
        for n in 1..50 {
            assert!(r.below(n) < n);
        }
        assert_eq!(r.below(0), 0);
        let empty: [&str; 0] = [];
        assert_eq!(r.pick(&empty), "");
        let d = r.distinct(10, 4);
        assert_eq!(d.len(), 4);
        let mut s = d.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 4);
        assert_eq!(r.distinct(2, 5).len(), 2);
    }
}
