//! Trending score and rank key in plain Rust, for the tests: the SQL (`hms_trending_score`,
//! `hms_trending_rank`, design §8) is the source of truth, and the parity phase of
//! tests/histories.rs checks these numbers against it on thousands of inputs.

/// Trending weights: the tests read them from the `hms_settings` row (no copy of the defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// Points per listener.
    pub listener: f64,
    /// Points per speaker.
    pub speaker: f64,
    /// Points for a featured room.
    pub featured_bonus: f64,
    /// Hours for the score to halve.
    pub half_life_hours: f64,
}

/// True for finite numbers above zero (false for NaN).
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// The undecayed score: `listeners × w.listener + speakers × w.speaker + featured bonus`.
pub fn base(listeners: u64, speakers: u64, featured: bool, w: &Weights) -> f64 {
    // u64 -> f64 is exact up to 2^53, far above any real audience.
    let bonus = if featured { w.featured_bonus } else { 0.0 };
    listeners as f64 * w.listener + speakers as f64 * w.speaker + bonus
}

/// The decayed score rounded like `NUMERIC(10,2)`:
/// `base × 0.5^(max(0, hours) / half_life)`. Negative or NaN hours count as 0; an invalid
/// (non-positive or non-finite) half-life yields 0 rather than a meaningless number.
pub fn score(
    listeners: u64,
    speakers: u64,
    featured: bool,
    hours_since_active: f64,
    w: &Weights,
) -> f64 {
    if !positive(w.half_life_hours) {
        return 0.0;
    }
    let hours = hours_since_active.max(0.0);
    let decay = 0.5f64.powf(hours / w.half_life_hours);
    round_numeric_2(base(listeners, speakers, featured, w) * decay)
}

/// The order key: `log2(base) + epoch / (half_life × 3600)`; `None` when base is 0 (or the
/// inputs are unusable), which the feed sorts last. Ordering by it equals ordering by the
/// decayed score at every instant, because `0.5^(now/half_life)` is common to all rooms.
pub fn rank_key(
    listeners: u64,
    speakers: u64,
    featured: bool,
    last_active_epoch_seconds: f64,
    w: &Weights,
) -> Option<f64> {
    let b = base(listeners, speakers, featured, w);
    if !positive(b) || !positive(w.half_life_hours) {
        return None;
    }
    let key = b.log2() + last_active_epoch_seconds / (w.half_life_hours * 3600.0);
    key.is_finite().then_some(key)
}

/// Rounds to two decimals exactly as PostgreSQL casts `float8` to `NUMERIC(10,2)`: it first
/// prints the double with 15 significant digits (`DBL_DIG`), then rounds that decimal half
/// away from zero. Plain `(x * 100).round() / 100` differs on values like 1.005.
pub fn round_numeric_2(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let text = format!("{:.14e}", x.abs());
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return x;
    };
    let (Ok(exponent), Ok(digits)) = (
        exponent.parse::<i32>(),
        mantissa.replace('.', "").parse::<u128>(),
    ) else {
        return x;
    };
    // value = digits × 10^(exponent − 14); hundredths = digits × 10^(exponent − 12).
    let shift = exponent - 12;
    let hundredths = if shift >= 0 {
        if shift > 20 {
            // Far beyond NUMERIC(10,2); already an integer at double precision.
            return x;
        }
        digits * 10u128.pow(shift.unsigned_abs())
    } else {
        let k = shift.unsigned_abs();
        if k > 30 {
            0
        } else {
            let p = 10u128.pow(k);
            let (q, r) = (digits / p, digits % p);
            if r * 2 >= p {
                q + 1
            } else {
                q
            }
        }
    };
    let magnitude = hundredths as f64 / 100.0;
    if x < 0.0 {
        -magnitude
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Weights = Weights {
        listener: 1.0,
        speaker: 3.0,
        featured_bonus: 5.0,
        half_life_hours: 6.0,
    };

    #[test]
    fn published_vectors() {
        assert_eq!(score(10, 2, false, 0.0, &W), 16.0);
        assert_eq!(score(20, 3, true, 0.0, &W), 34.0);
        assert_eq!(score(10, 2, false, 6.0, &W), 8.0);
        assert_eq!(score(10, 2, false, 12.0, &W), 4.0);
        for hours in [0.0, 1.0, 1e6, f64::INFINITY] {
            assert_eq!(score(0, 0, false, hours, &W), 0.0);
        }
    }

    #[test]
    fn negative_and_nan_hours_mean_no_decay() {
        assert_eq!(score(10, 2, false, -3.0, &W), 16.0);
        assert_eq!(score(10, 2, false, f64::NAN, &W), 16.0);
    }

    #[test]
    fn decay_underflows_to_zero() {
        assert_eq!(score(10_000_000, 10_000_000, true, 1e9, &W), 0.0);
        assert_eq!(score(1, 0, false, 100_000.0, &W), 0.0);
    }

    #[test]
    fn rounding_matches_numeric_cast() {
        assert_eq!(round_numeric_2(1.005), 1.01);
        assert_eq!(round_numeric_2(2.675), 2.68);
        assert_eq!(round_numeric_2(0.125), 0.13);
        assert_eq!(round_numeric_2(0.004999), 0.0);
        assert_eq!(round_numeric_2(0.005), 0.01);
        assert_eq!(round_numeric_2(-1.005), -1.01);
        assert_eq!(round_numeric_2(12.344999999999), 12.34);
        // 16 × 0.5^(1/6) = 14.2544...
        assert_eq!(score(10, 2, false, 1.0, &W), 14.25);
        assert_eq!(round_numeric_2(f64::NAN), 0.0);
    }

    #[test]
    fn ten_million_counts_fit_numeric_10_2() {
        let top = score(10_000_000, 10_000_000, true, 0.0, &W);
        assert_eq!(top, 40_000_005.0);
        assert!(top <= 99_999_999.99);
    }

    #[test]
    fn invalid_half_life_is_harmless() {
        let w = Weights {
            half_life_hours: 0.0,
            ..W
        };
        assert_eq!(score(10, 2, false, 0.0, &w), 0.0);
        assert_eq!(rank_key(10, 2, false, 0.0, &w), None);
    }

    #[test]
    fn rank_key_orders_like_the_decayed_score() {
        assert_eq!(rank_key(0, 0, false, 1.7e9, &W), None);
        let k = rank_key(10, 2, false, 21_600.0, &W).unwrap();
        assert!((k - (4.0 + 1.0)).abs() < 1e-12);
        // Room A: 16 points, active at t0. Room B: 8 points, active 6 h later: equal now.
        let t0 = 1_728_000_000.0;
        let a = rank_key(10, 2, false, t0, &W).unwrap();
        let b = rank_key(5, 1, false, t0 + 21_600.0, &W).unwrap();
        assert!((a - b).abs() < 1e-9);
        // And the order is the order of scores at any later instant.
        let c = rank_key(30, 0, false, t0 - 3_600.0, &W).unwrap();
        for now_h in [0.0, 5.0, 48.0] {
            let now = t0 + 21_600.0 + now_h * 3600.0;
            let score_a = 16.0 * 0.5f64.powf((now - t0) / 21_600.0);
            let score_c = 30.0 * 0.5f64.powf((now - (t0 - 3_600.0)) / 21_600.0);
            assert_eq!(a > c, score_a > score_c);
        }
    }
}
