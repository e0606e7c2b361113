//! Choosing a node: the index of the usable item with the lowest score, ties broken at random.
//!
//! Two ways, by cluster size ([`choose`]):
//! - up to [`EXACT_UP_TO`] nodes, **exact least-used**: every call looks at every node, which at
//!   that size costs less than the random draws would;
//! - above it, **power of two choices** (what Envoy's least-request balancer and tower's `p2c`
//!   do): two usable nodes drawn at random, the less used of the two wins. A call then costs the
//!   same at 10,000 nodes as at 20, and the spread stays close to even (the most loaded node
//!   stays within a small additive gap of the average, Mitzenmacher's result), where picking one
//!   node at random would not.
//!
//! Kept free of endpoints and connections so that it can be tested alone with a seeded RNG.

use rand::Rng;

/// Up to this many items, [`choose`] scans them all (the default of
/// `RouterConfig::exact_pick_up_to`).
pub(crate) const EXACT_UP_TO: usize = 16;

/// How many random draws [`choose`] makes to find two usable items before it falls back to a
/// full scan (when most items are unusable: ejected, tried already, or full).
const DRAWS: usize = 16;

/// The index of the usable item to call: exact least-used for small slices, the less used of two
/// random usable items above [`EXACT_UP_TO`] (see the module docs). `None` if nothing is usable.
pub(crate) fn choose<T, R: Rng>(
    items: &[T],
    exact_up_to: usize,
    usable: impl Fn(&T) -> bool,
    score: impl Fn(&T) -> u64,
    rng: &mut R,
) -> Option<usize> {
    if items.len() <= exact_up_to {
        return least_used(items, usable, score, rng);
    }
    let mut first: Option<usize> = None;
    for _ in 0..DRAWS {
        let i = rng.random_range(0..items.len());
        if first == Some(i) || !usable(&items[i]) {
            continue;
        }
        let Some(f) = first else {
            first = Some(i);
            continue;
        };
        let (a, b) = (score(&items[f]), score(&items[i]));
        return Some(match a.cmp(&b) {
            std::cmp::Ordering::Less => f,
            std::cmp::Ordering::Greater => i,
            std::cmp::Ordering::Equal if rng.random_bool(0.5) => f,
            std::cmp::Ordering::Equal => i,
        });
    }
    // Most items are unusable: look at them all rather than miss the few that are.
    least_used(items, usable, score, rng)
}

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
    fn above_the_exact_size_two_random_choices_keep_the_spread_close_to_even() {
        // 1,000 nodes, 100,000 calls that each stay: the most loaded node ends close to the
        // average of 100 (a single random choice gives about 130 here).
        let mut rng = SmallRng::seed_from_u64(3);
        let loads: Vec<std::cell::Cell<u64>> = (0..1000).map(|_| std::cell::Cell::new(0)).collect();
        for _ in 0..100_000 {
            let i = choose(&loads, EXACT_UP_TO, |_| true, |l| l.get(), &mut rng).unwrap();
            loads[i].set(loads[i].get() + 1);
        }
        let most = loads.iter().map(|l| l.get()).max().unwrap();
        assert!(
            most <= 106,
            "the most loaded node took {most} calls (average 100)"
        );
    }

    #[test]
    fn above_the_exact_size_unusable_items_are_skipped_and_a_lone_usable_one_is_found() {
        let mut rng = SmallRng::seed_from_u64(5);
        let items: Vec<u64> = (0..5000).collect();
        for _ in 0..100 {
            assert_eq!(
                choose(&items, EXACT_UP_TO, |i| *i == 4321, |_| 0, &mut rng),
                Some(4321)
            );
            let picked = choose(&items, EXACT_UP_TO, |i| i % 2 == 0, |i| *i, &mut rng).unwrap();
            assert_eq!(picked % 2, 0);
        }
        assert_eq!(
            choose(&items, EXACT_UP_TO, |_| false, |_| 0, &mut rng),
            None
        );
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
