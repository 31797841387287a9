//! Native benchmark of the pure core: `hms_webhook::begin` (verify + parse + classify + plan) on one
//! signed ~1 KB `peer.join.success`, timed per event after warm-up; prints one JSON line. Two
//! early refusals of the same body (no credentials; a wrong signature) split the figure into the
//! fixed cost, the HMAC, and parse + plan, as the Wasm and TypeScript probes do.
//!
//! `npm run bench` passes the exact bytes the Wasm and TypeScript runs also get:
//! `cargo run --release --example bench_core -- --body FILE --signature HEX --secret S
//! --now-ms MS [--iters N] [--warmup N]`. Without `--body` it times a built-in sample.
//!
//! For instruction profiles (`valgrind --tool=callgrind`), `--repeat N --variant
//! full|bad_signature|no_credentials` only runs `begin` N times on that variant, untimed: the
//! difference between two N gives the exact instructions of one call.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use hmac::{Hmac, Mac};
use hms_webhook::{begin, Config, Incoming, Step};
use sha2::Sha256;

/// The built-in sample (the 100ms reference `peer.join.success`, with richer peer metadata).
const SAMPLE: &str = r#"{"version":"2.0","id":"7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81","account_id":"64f1a2b3c4d5e6f708192a3b","app_id":"64f1a2b3c4d5e6f708192a3d","timestamp":"2024-10-04T18:03:10Z","type":"peer.join.success","data":{"room_id":"6501c1d2e3f4a5b6c7d8e9f0","room_name":"friday-night-jazz-with-the-quartet-live-from-bangalore","session_id":"6702a7b8c9d0e1f2a3b4c5d6","template_id":"6501c0ffee0123456789abcd","peer_id":"a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845","user_id":"usr_1907","user_name":"Ravi","user_data":"{\"avatar\":\"https://cdn.example.com/avatars/usr_1907/r7-256x256.png\",\"display_name\":\"Ravi Shankar\",\"bio\":\"Jazz enthusiast, late-night listener, occasional speaker on Friday sessions.\",\"badges\":[\"early-supporter\",\"top-listener\",\"verified\"],\"locale\":\"en-IN\",\"followers\":1842}","role":"listener","type":"regular","joined_at":"2024-10-04T18:03:10.55810264Z","session_started_at":"2024-10-04T18:00:02.183742915Z"}}"#;
const SAMPLE_NOW_MS: i64 = 1_728_064_991_558;
const DEFAULT_SECRET: &str = "bench-core-secret-5f1c2a9e";

struct Args {
    body: Vec<u8>,
    signature: Option<String>,
    secret: String,
    now_ms: i64,
    iters: usize,
    warmup: usize,
    repeat: Option<(usize, String)>,
}

/// The sample's `x-100ms-signature` (hex HMAC-SHA256 of the body), as a sender computes it.
fn sign_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        body: SAMPLE.as_bytes().to_vec(),
        signature: None,
        secret: DEFAULT_SECRET.to_owned(),
        now_ms: SAMPLE_NOW_MS,
        iters: 50_000,
        warmup: 5_000,
        repeat: None,
    };
    let mut variant = "full".to_owned();
    let mut repeat = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--body" => {
                let path = value()?;
                args.body = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            }
            "--signature" => args.signature = Some(value()?),
            "--secret" => args.secret = value()?,
            "--now-ms" => args.now_ms = value()?.parse().map_err(|e| format!("--now-ms: {e}"))?,
            "--iters" => args.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--repeat" => repeat = Some(value()?.parse().map_err(|e| format!("--repeat: {e}"))?),
            "--variant" => variant = value()?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.iters == 0 {
        return Err("--iters must be at least 1".to_owned());
    }
    args.repeat = repeat.map(|n| (n, variant));
    Ok(args)
}

/// Nearest-rank quantile of ascending samples (the same rule as bench/lib/stats.ts).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}

/// One timed `begin`, in microseconds.
fn time_once(config: &Config, incoming: &Incoming<'_>) -> f64 {
    let started = Instant::now();
    let step = begin(black_box(config), black_box(incoming));
    let elapsed = started.elapsed();
    black_box(step);
    elapsed.as_nanos() as f64 / 1000.0
}

/// Times the full request (`iters`) and each refusal (`iters / 5`) in ten interleaved blocks,
/// so load drift affects every term of the breakdown alike; samples come back ascending.
fn time_all(
    config: &Config,
    variants: [&Incoming<'_>; 3],
    iters: usize,
    warmup: usize,
) -> [Vec<f64>; 3] {
    const BLOCKS: usize = 10;
    let counts = [iters, (iters / 5).max(1), (iters / 5).max(1)];
    for (incoming, count) in variants.iter().zip([warmup, warmup / 5, warmup / 5]) {
        for _ in 0..count {
            black_box(begin(black_box(config), black_box(incoming)));
        }
    }
    let mut samples: [Vec<f64>; 3] = Default::default();
    for block in 0..BLOCKS {
        for ((incoming, total), out) in variants.iter().zip(counts).zip(samples.iter_mut()) {
            let share = total / BLOCKS + usize::from(block < total % BLOCKS);
            for _ in 0..share {
                out.push(time_once(config, incoming));
            }
        }
    }
    for out in &mut samples {
        out.sort_by(f64::total_cmp);
    }
    samples
}

/// The same summary shape as bench/lib/stats.ts (rounded to nanoseconds).
fn summary(sorted: Vec<f64>) -> serde_json::Value {
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    serde_json::json!({
        "n": sorted.len(),
        "median": round(quantile(&sorted, 0.5)),
        "p99": round(quantile(&sorted, 0.99)),
        "mean": round(mean),
        "min": round(sorted.first().copied().unwrap_or(f64::NAN)),
        "max": round(sorted.last().copied().unwrap_or(f64::NAN)),
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("bench_core: {message}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env([
        ("HMS_WEBHOOK_SECRET", args.secret.as_str()),
        ("SUPABASE_URL", "http://127.0.0.1:54321"),
        ("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_bench"}"#),
    ]) {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("bench_core: {} {}", problem.variable, problem.reason);
            return ExitCode::from(2);
        }
    };
    let signature = args
        .signature
        .clone()
        .unwrap_or_else(|| sign_hex(&args.secret, &args.body));
    let content_type = ("content-type".to_owned(), "application/json".to_owned());
    let full = vec![
        content_type.clone(),
        ("x-100ms-signature".to_owned(), signature),
    ];
    let bad_signature = vec![
        content_type.clone(),
        ("x-100ms-signature".to_owned(), "0".repeat(64)),
    ];
    let no_credentials = vec![content_type];
    let incoming = |headers| Incoming {
        method: "POST",
        headers,
        body: &args.body,
        now_ms: args.now_ms,
    };

    if let Some((n, variant)) = &args.repeat {
        let headers = match variant.as_str() {
            "full" => &full,
            "bad_signature" => &bad_signature,
            "no_credentials" => &no_credentials,
            other => {
                eprintln!("bench_core: unknown --variant {other}");
                return ExitCode::from(2);
            }
        };
        let incoming = incoming(headers);
        for _ in 0..*n {
            black_box(begin(black_box(&config), black_box(&incoming)));
        }
        return ExitCode::SUCCESS;
    }

    let (outcome, rpc_body) = match begin(&config, &incoming(&full)) {
        Step::Call(call) => ("call".to_owned(), call.request.body.clone()),
        Step::Respond(reply) => (format!("respond {}", reply.status), None),
    };
    for (name, headers) in [
        ("bad_signature", &bad_signature),
        ("no_credentials", &no_credentials),
    ] {
        if let Step::Respond(reply) = begin(&config, &incoming(headers)) {
            if reply.status == 401 {
                continue;
            }
        }
        eprintln!("bench_core: {name} was not refused with 401");
        return ExitCode::FAILURE;
    }

    let [per_event, bad, none] = time_all(
        &config,
        [
            &incoming(&full),
            &incoming(&bad_signature),
            &incoming(&no_credentials),
        ],
        args.iters,
        args.warmup,
    );
    let result = serde_json::json!({
        "impl": "rust_native",
        "profile": if cfg!(debug_assertions) { "dev" } else { "release" },
        "iters": args.iters,
        "warmup": args.warmup,
        "body_bytes": args.body.len(),
        "per_event_us": summary(per_event),
        "breakdown_us": {
            "no_credentials": summary(none)["median"],
            "bad_signature": summary(bad)["median"],
        },
        "outcome": outcome,
        "rpc_body": rpc_body,
    });
    println!("{result}");
    ExitCode::SUCCESS
}
