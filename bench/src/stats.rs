//! Order statistics shared by the parts: nearest-rank percentiles and medians.

/// The `p`-th percentile (0 to 100) of `sorted`, by nearest rank; `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median and the maximum of `values` (the mean of the middle two for an even count; 0 and
/// 0 when there are none).
pub fn median_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    (median, v[v.len() - 1])
}

/// The median of `values` (0 when there are none).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    median_max(values).0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50.0), Some(Duration::from_micros(50)));
        assert_eq!(percentile(&v, 99.0), Some(Duration::from_micros(99)));
        assert_eq!(percentile(&v, 100.0), Some(Duration::from_micros(100)));
        assert_eq!(percentile(&v[..1], 99.0), Some(Duration::from_micros(1)));
        assert_eq!(percentile::<u32>(&[], 99.0), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median_max([3.0, 1.0, 2.0]), (2.0, 3.0));
        assert_eq!(median_max([4.0, 1.0, 2.0, 3.0]), (2.5, 4.0));
        assert_eq!(median_max([]), (0.0, 0.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
