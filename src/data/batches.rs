//! Index batches for one pass over a data set: the seeded shuffle and the batch boundaries.
//!
//! Batching works on indices rather than on copies of the data; the loader turns each batch of
//! indices into pixels when the step needs it.

use super::rng::Rng;
use tch::Tensor;

/// Iterator over the index batches of one epoch; each item is a `[b]` int64 CPU tensor.
///
/// The order is fixed when the iterator is built (the shuffle draws from `rng` then), so a
/// run is reproducible regardless of how fast the batches are consumed.
#[derive(Debug, Clone)]
pub struct EpochBatches {
    order: Vec<i64>,
    batch_size: usize,
    drop_last: bool,
    pos: usize,
    yielded: usize,
}

impl EpochBatches {
    /// Batches over `0..n`. `shuffle` permutes the order with `rng` (untouched otherwise);
    /// `drop_last` skips a final batch smaller than `batch_size` (training, so that batch norm
    /// never sees a tiny batch). A `batch_size` of 0 is treated as 1 rather than looping forever.
    pub fn new(n: usize, batch_size: usize, shuffle: bool, drop_last: bool, rng: &mut Rng) -> EpochBatches {
        let mut order: Vec<i64> = (0..n as i64).collect();
        if shuffle {
            rng.shuffle(&mut order);
        }
        EpochBatches { order, batch_size: batch_size.max(1), drop_last, pos: 0, yielded: 0 }
    }

    /// Number of batches this epoch yields in total.
    pub fn num_batches(&self) -> usize {
        let n = self.order.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The next batch as plain indices (the same data as [`Iterator::next`], without a tensor).
    pub fn next_indices(&mut self) -> Option<&[i64]> {
        let n = self.order.len();
        let end = (self.pos + self.batch_size).min(n);
        if self.pos >= n || (self.drop_last && end - self.pos < self.batch_size) {
            return None;
        }
        let start = self.pos;
        self.pos = end;
        self.yielded += 1;
        Some(&self.order[start..end])
    }
}

impl Iterator for EpochBatches {
    type Item = Tensor;

    fn next(&mut self) -> Option<Tensor> {
        self.next_indices().map(Tensor::from_slice)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.num_batches().saturating_sub(self.yielded);
        (left, Some(left))
    }
}

impl ExactSizeIterator for EpochBatches {}

/// In-order batches over `0..n` keeping the last partial batch: for evaluation and inference.
pub fn sequential(n: usize, batch_size: usize) -> EpochBatches {
    // No shuffle means the generator is never drawn from; any seed will do.
    EpochBatches::new(n, batch_size, false, false, &mut Rng::new(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(b: EpochBatches) -> Vec<Vec<i64>> {
        b.map(|t| crate::host::vec::<i64>(&t).unwrap()).collect()
    }

    #[test]
    fn sequential_keeps_partial_last_batch() {
        let mut b = sequential(7, 3);
        assert_eq!(b.len(), 3);
        assert_eq!(b.next_indices(), Some(&[0i64, 1, 2][..]));
        assert_eq!(b.len(), 2);
        let b = sequential(7, 3);
        assert_eq!(collect(b), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    }

    #[test]
    fn drop_last_drops_only_the_short_batch() {
        let mut rng = Rng::new(1);
        let b = EpochBatches::new(7, 3, false, true, &mut rng);
        assert_eq!(b.num_batches(), 2);
        assert_eq!(collect(b), vec![vec![0, 1, 2], vec![3, 4, 5]]);
        let exact = EpochBatches::new(6, 3, false, true, &mut rng);
        assert_eq!(collect(exact).len(), 2);
    }

    #[test]
    fn shuffle_is_a_reproducible_permutation() {
        let a: Vec<i64> = collect(EpochBatches::new(100, 16, true, false, &mut Rng::new(9))).concat();
        let b: Vec<i64> = collect(EpochBatches::new(100, 16, true, false, &mut Rng::new(9))).concat();
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn consecutive_epochs_differ() {
        // One generator across epochs, as the trainer uses it: each epoch must get a new order.
        let mut rng = Rng::new(4);
        let e1 = collect(EpochBatches::new(50, 50, true, false, &mut rng));
        let e2 = collect(EpochBatches::new(50, 50, true, false, &mut rng));
        assert_ne!(e1, e2);
    }

    #[test]
    fn zero_batch_size_terminates() {
        assert_eq!(collect(sequential(3, 0)), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(collect(sequential(0, 4)).len(), 0);
    }
}
