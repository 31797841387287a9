//! Trending parity: SQL `hms_trending_score` / `hms_trending_rank` against Rust
//! `support::trending::{score, rank_key}` on thousands of generated inputs.

use std::time::Instant;

use super::trending::{rank_key, score, Weights};
use postgres::Client;

use super::db::describe;
use super::generate::Rng;
use super::harness::{close_rel, Ctx, Tally};

/// One parity case: counts, featured, age in hours, last activity in epoch seconds.
pub struct TrendInput {
    listeners: i64,
    speakers: i64,
    featured: bool,
    hours: f64,
    epoch: f64,
}

/// The spec's vectors, exact half-cent ties, zeros, then random inputs across magnitudes.
pub fn trending_inputs(seed: u64) -> Vec<TrendInput> {
    let mut rng = Rng::for_item(seed, u64::MAX);
    let mut inputs = vec![
        TrendInput {
            listeners: 10,
            speakers: 2,
            featured: false,
            hours: 0.0,
            epoch: 1.7e9,
        },
        TrendInput {
            listeners: 20,
            speakers: 3,
            featured: true,
            hours: 0.0,
            epoch: 1.7e9,
        },
        TrendInput {
            listeners: 10,
            speakers: 2,
            featured: false,
            hours: 6.0,
            epoch: 1.7e9,
        },
    ];
    // Exact halves at the second decimal (0.125, 0.046875) and a value just under half a cent.
    for (listeners, speakers, featured, hours) in
        [(1, 0, false, 18.0), (0, 1, false, 36.0), (0, 0, true, 60.0)]
    {
        inputs.push(TrendInput {
            listeners,
            speakers,
            featured,
            hours,
            epoch: 1.7e9,
        });
    }
    for hours in [0.0, 1.5, 6.0, 1e6, -3.0] {
        inputs.push(TrendInput {
            listeners: 0,
            speakers: 0,
            featured: false,
            hours,
            epoch: 1.7e9,
        });
    }
    let count = |rng: &mut Rng| -> i64 {
        match rng.below(5) {
            0 => 0,
            1 => rng.range(1, 10),
            2 => rng.range(10, 1000),
            3 => rng.range(1000, 100_000),
            _ => rng.range(100_000, 10_000_001),
        }
    };
    while inputs.len() < 2400 {
        let hours = match rng.below(8) {
            0 => -(rng.below(100_000) as f64) / 1000.0, // negative: clock skew
            1 => 0.0,
            2 => 6.0 * rng.range(1, 40) as f64, // whole half-lives
            3 => rng.below(10_000_000) as f64 / 1e5, // up to 100 h, fine grained
            4 => rng.range(1000, 2_000_000) as f64, // very old: underflow to 0
            5 => rng.below(1000) as f64 / 3600.0, // seconds
            _ => rng.below(48_000) as f64 / 1000.0,
        };
        let epoch = match rng.below(3) {
            0 => rng.range(0, 4_102_444_800) as f64, // 1970..2100
            1 => 1.7e9 + rng.below(1_000_000_000) as f64 / 1e3,
            _ => rng.range(1_600_000_000, 1_900_000_000) as f64 + 0.5,
        };
        inputs.push(TrendInput {
            listeners: count(&mut rng),
            speakers: count(&mut rng),
            featured: rng.chance(30),
            hours,
            epoch,
        });
    }
    inputs
}

/// Runs every input through the SQL functions with weights `w` and compares with Rust; returns
/// the disagreements (at most 20).
pub fn parity_batch(
    client: &mut Client,
    inputs: &[TrendInput],
    w: &Weights,
) -> Result<Vec<String>, String> {
    let rows = client
        .query(
            "select hms_private.trending_score(l, s, f, h, $6, $7, $8, $9)::text, \
                    hms_private.trending_rank(l, s, f, e, $6, $7, $8, $9) \
             from unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::float8[], $5::float8[]) \
                  with ordinality as t(l, s, f, h, e, n) order by n",
            &[
                &inputs.iter().map(|i| i.listeners).collect::<Vec<_>>(),
                &inputs.iter().map(|i| i.speakers).collect::<Vec<_>>(),
                &inputs.iter().map(|i| i.featured).collect::<Vec<_>>(),
                &inputs.iter().map(|i| i.hours).collect::<Vec<_>>(),
                &inputs.iter().map(|i| i.epoch).collect::<Vec<_>>(),
                &w.listener,
                &w.speaker,
                &w.featured_bonus,
                &w.half_life_hours,
            ],
        )
        .map_err(|e| describe(&e))?;
    let mut failures = Vec::new();
    for (input, row) in inputs.iter().zip(&rows) {
        let (l, s) = (input.listeners as u64, input.speakers as u64);
        let sql_score: String = row.get(0);
        let sql_rank: Option<f64> = row.get(1);
        let rust_score = score(l, s, input.featured, input.hours, w);
        let rust_rank = rank_key(l, s, input.featured, input.epoch, w);
        if sql_score.parse::<f64>() != Ok(rust_score) {
            failures.push(format!(
                "score({l}, {s}, {}, {}) {w:?}: SQL {sql_score}, Rust {rust_score}",
                input.featured, input.hours
            ));
        }
        if !close_rel(sql_rank, rust_rank, 1e-9) {
            failures.push(format!(
                "rank({l}, {s}, {}, {}) {w:?}: SQL {sql_rank:?}, Rust {rust_rank:?}",
                input.featured, input.epoch
            ));
        }
        if failures.len() >= 20 {
            break;
        }
    }
    Ok(failures)
}

/// Phase 2: the spec's vectors in Rust, then SQL against Rust on every input.
pub fn phase_parity(ctx: &mut Ctx, tally: &mut Tally) -> Result<(), String> {
    let started = Instant::now();
    for (l, s, f, h, want) in [
        (10, 2, false, 0.0, 16.0),
        (20, 3, true, 0.0, 34.0),
        (10, 2, false, 6.0, 8.0),
        (0, 0, false, 3.0, 0.0),
    ] {
        let got = score(l, s, f, h, &ctx.weights);
        if got != want {
            return Err(format!(
                "Rust score({l}, {s}, {f}, {h}) = {got}, the spec says {want}"
            ));
        }
    }
    let inputs = trending_inputs(ctx.seed);
    // The defaults (what hms_settings starts with) on every input, and other weights on a part:
    // the trigger passes whatever hms_settings holds.
    let custom = Weights {
        listener: 1.5,
        speaker: 2.25,
        featured_bonus: 7.0,
        half_life_hours: 3.5,
    };
    let mut failures = parity_batch(&mut ctx.svc, &inputs, &ctx.weights)?;
    failures.extend(parity_batch(&mut ctx.svc, &inputs[..600], &custom)?);
    let n = inputs.len() + 600;
    if failures.is_empty() {
        tally.passed += n;
        println!(
            "parity: {n} inputs ({} with default weights, 600 with {custom:?}): hms_trending_score == trending::score exactly, \
             hms_trending_rank ~ rank_key (1e-9 rel) ({:.0} ms)",
            inputs.len(),
            started.elapsed().as_secs_f64() * 1000.0
        );
    } else {
        tally.passed += n.saturating_sub(failures.len());
        tally.failed += failures.len();
        for f in &failures {
            println!("FAILED parity {f}");
        }
    }
    Ok(())
}
