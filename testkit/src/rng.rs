//! The workspace's one seeded generator.

use std::time::Duration;

use pkg::rand::SplitMix64;

/// [`pkg::rand::SplitMix64`] (the generator raft spreads its election timeouts with) with the draws tests
/// want: the same sequence from the same seed on every machine and every version, which is what a test needs
/// to replay a failure from its seed. Not for cryptography.
///
/// It implements [`rand::RngCore`], so `rand::Rng`'s ranges and distributions work on it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// In `0..n` (one draw, reduced modulo `n`; `n = 0` is taken as 1). The modulo bias is below 2^-40
    /// for the small `n` tests use.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits of one draw.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (never for `p <= 0`). Always takes exactly one draw, so the sequence
    /// after it does not depend on `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A uniform share of `span`, in `[0, span)`.
    pub fn share_of(&mut self, span: Duration) -> Duration {
        span.mul_f64(self.unit())
    }

    /// One of `items`, or None (without a draw) when there is none.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.below(items.len() as u64) as usize])
    }

    /// A generator seeded from this one's next draw: an independent stream for a sub-task, so that the
    /// sub-task's draws do not shift this one's.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// Fills `dest` with draws, eight bytes (little-endian) at a time.
    pub fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

impl rand::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        (Rng::next_u64(self) >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Rng::fill_bytes(self, dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64() {
        // First outputs for seed 0 from the reference implementation (Vigna's splitmix64.c).
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn same_seed_same_sequence() {
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = Rng::new(9);
        assert!((0..1000).all(|_| (0.0..1.0).contains(&rng.unit())));
        assert!((0..1000).all(|_| rng.below(7) < 7));
        assert_eq!(rng.below(0), 0);
        let span = Duration::from_millis(10);
        assert!((0..100).all(|_| rng.share_of(span) < span));
        assert_eq!(rng.pick::<u8>(&[]), None);
        assert!(matches!(rng.pick(&[3, 4]), Some(3 | 4)));
    }

    #[test]
    fn chance_takes_one_draw_whatever_p() {
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert!(!a.chance(0.0));
        assert!(b.chance(1.0));
        assert_eq!(a, b);
        let hits = (0..10_000).filter(|_| a.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }

    #[test]
    fn fill_bytes_covers_a_partial_tail() {
        let mut rng = Rng::new(1);
        let mut bytes = [0u8; 13];
        rng.fill_bytes(&mut bytes);
        let mut again = Rng::new(1);
        assert_eq!(bytes[..8], again.next_u64().to_le_bytes());
        assert_eq!(bytes[8..], again.next_u64().to_le_bytes()[..5]);
    }

    #[test]
    fn forks_are_independent_streams() {
        let mut parent = Rng::new(3);
        let mut child = parent.fork();
        assert_ne!(child.next_u64(), parent.next_u64());
    }
}
