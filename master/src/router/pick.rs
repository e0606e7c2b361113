//! Least-used selection: the index of the item with the lowest score, ties broken at random.
//!
//! Kept free of endpoints and connections so that it can be tested alone with a seeded RNG.

use rand::Rng;

/// Returns the index of the usable item with the lowest `score`, choosing uniformly at random
/// among equal scores (reservoir sampling, one pass, no allocation). `None` if nothing is usable.
pub(crate) fn least_used<T, R: Rng>(
    items: &[T],
    usable: impl Fn(&T) -> bool,
    score: impl Fn(&T) -> u64,
    rng: &mut R,
) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    let mut ties = 0u32;
    for (i, item) in items.iter().enumerate() {
        if !usable(item) {
            continue;
        }
        let s = score(item);
        match best {
            Some((_, b)) if s > b => {}
            Some((_, b)) if s == b => {
                ties += 1;
                if rng.random_range(0..ties) == 0 {
                    best = Some((i, s));
                }
            }
            _ => {
                best = Some((i, s));
                ties = 1;
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn lowest_score_wins() {
        let mut rng = SmallRng::seed_from_u64(1);
        let scores = [5u64, 2, 9, 3];
        assert_eq!(least_used(&scores, |_| true, |s| *s, &mut rng), Some(1));
        assert_eq!(least_used(&scores, |s| *s != 2, |s| *s, &mut rng), Some(3));
        assert_eq!(least_used(&scores, |_| false, |s| *s, &mut rng), None);
    }

    #[test]
    fn ties_are_shared_evenly() {
        let mut rng = SmallRng::seed_from_u64(7);
        let scores = [1u64, 0, 0, 0];
        let mut counts = [0u32; 4];
        for _ in 0..3000 {
            counts[least_used(&scores, |_| true, |s| *s, &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        for c in &counts[1..] {
            assert!((800..1200).contains(c), "uneven tie-breaking: {counts:?}");
        }
    }
}
