//! Load tests: the feed's index plan on 100,000 rooms, 64 concurrent connections on one room and
//! on 20 rooms (exact against the model), and a 5,000-peer hot room.

use std::collections::HashSet;
use std::sync::Barrier;
use std::time::Instant;

use super::db::{self, apply_all, apply_sql, connect, create_room_sql, read_state, text};
use super::generate::{history, Rng, Shape};
use super::harness::{compare, event, join, new_room, q, query_value, room_name, Ctx};
use super::model::{expected, Action, Delivery, Event, Initial, RoleClass};

/// Every plan node (depth first) of an EXPLAIN (FORMAT JSON) plan.
pub fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    out.push(plan.clone());
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            plan_nodes(child, out);
        }
    }
}

/// 100,000 rooms: the feed (and the live-only feed) must be an index scan, best first.
pub fn feed_plan(ctx: &mut Ctx) -> Result<String, String> {
    ctx.admin
        .batch_execute(&format!(
            "insert into public.rooms (hms_room_id, listener_count, speaker_count, featured, is_live, last_active_at)
             select {} || g, g % 50, g % 7, g % 97 = 0, g % 3 = 0, now() - (g % 20000) * interval '1 minute'
             from generate_series(1, 100000) as g;
             analyze public.rooms;",
            text(&room_name(ctx, "feed:"))
        ))
        .map_err(q)?;
    let mut anon = connect(&ctx.url, Some("anon"))?;
    let mut notes = Vec::new();
    // The feed's index holds the rank's band (floor of the rank key, design §8): both feeds read
    // it in order.
    for (args, indexes) in [
        ("20", &["rooms_trending_band_idx"][..]),
        ("20, 0, true", &["rooms_trending_band_idx"][..]),
    ] {
        let call = format!("trending_rooms({args})");
        // simple_query: the plan comes back as text whatever its column type (json).
        let plan = db::simple_values(
            &mut anon,
            &format!("explain (analyze, format json) select * from public.{call}"),
        )
        .map_err(q)?;
        let text = plan
            .into_iter()
            .next()
            .flatten()
            .ok_or("explain returned nothing")?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("explain output: {e}"))?;
        let top = &json[0];
        let mut nodes = Vec::new();
        plan_nodes(&top["Plan"], &mut nodes);
        if let Some(seq) = nodes
            .iter()
            .find(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "rooms")
        {
            return Err(format!("{call}: sequential scan on rooms: {seq}"));
        }
        for index in indexes {
            if !nodes.iter().any(|n| n["Index Name"] == *index) {
                return Err(format!("{call}: {index} not used; plan {}", top["Plan"]));
            }
        }
        if let Some(seq) = nodes.iter().find(|n| n["Node Type"] == "Seq Scan") {
            return Err(format!("{call}: sequential scan: {seq}"));
        }
        notes.push(format!(
            "{call}: index scan on {}, execution {:.3} ms",
            indexes.join(" + "),
            top["Execution Time"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    // The feed's rows: 20, best first, decayed scores never increasing down the list.
    let rows = anon
        .query(
            "select trending_rank, score_now::float8 from public.trending_rooms(20)",
            &[],
        )
        .map_err(q)?;
    let best: Option<f64> = query_value(
        &mut ctx.admin,
        "select max(trending_rank) from public.rooms",
        &[],
    )?;
    let ranks: Vec<Option<f64>> = rows.iter().map(|r| r.get(0)).collect();
    let scores: Vec<f64> = rows.iter().map(|r| r.get(1)).collect();
    let ordered = ranks.windows(2).all(|w| w[0] >= w[1]) && scores.windows(2).all(|w| w[0] >= w[1]);
    if rows.len() != 20 || ranks[0] != best || !ordered {
        return Err(format!(
            "feed rows wrong: {} rows, first rank {:?} vs best {best:?}, ordered {ordered}",
            rows.len(),
            ranks.first()
        ));
    }
    println!("feed: {}", notes.join("; "));
    ctx.admin
        .execute(
            &format!(
                "delete from public.rooms where hms_room_id like {}",
                text(&format!("{}%", room_name(ctx, "feed:")))
            ),
            &[],
        )
        .map_err(q)?;
    Ok(notes.join("; "))
}

/// Sends `events` (each to one of `threads` connections, with extra copies on other connections)
/// concurrently; returns how many calls were answered `applied`.
pub fn hammer(
    url: &str,
    threads: usize,
    work: &[(String, Event)],
    seed: u64,
) -> Result<usize, String> {
    let mut rng = Rng::new(seed);
    let mut lanes: Vec<Vec<&(String, Event)>> = vec![Vec::new(); threads];
    for item in work {
        lanes[rng.below(threads as u64) as usize].push(item);
        if rng.chance(25) {
            lanes[rng.below(threads as u64) as usize].push(item); // a concurrent retry
        }
    }
    for lane in &mut lanes {
        rng.shuffle(lane);
    }
    let barrier = Barrier::new(threads);
    let results: Vec<Result<usize, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lanes
            .iter()
            .map(|lane| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut c = connect(url, Some("service_role"));
                    barrier.wait();
                    let c = c.as_mut().map_err(|e| e.clone())?;
                    let mut applied = 0;
                    for (room, e) in lane {
                        // One statement per call: each webhook is its own transaction.
                        let answer = apply_all(c, room, std::slice::from_ref(e), false)?;
                        applied += usize::from(answer[0]["status"] == "applied");
                    }
                    Ok(applied)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    results.into_iter().sum()
}

/// `rooms` generated histories sent at once from 64 connections: every room must match the
/// model and every distinct event id must be applied exactly once.
pub fn concurrent(ctx: &mut Ctx, what: &str, rooms: usize, shape: Shape) -> Result<String, String> {
    let mut work = Vec::new();
    let mut expectations = Vec::new();
    let mut unique = 0;
    for i in 0..rooms {
        // Own stream per test (`what`): event ids must not collide with other tests' rooms.
        let stream = what
            .bytes()
            .fold(ctx.seed, |h, b| h.rotate_left(7) ^ u64::from(b));
        let mut rng = Rng::for_item(stream, i as u64);
        let h = history(&mut rng, shape);
        let room = room_name(ctx, &format!("{what}:{i}"));
        ctx.svc
            .batch_execute(&create_room_sql(&room, h.before))
            .map_err(q)?;
        // Webhooks only: the concurrency test is about the event path.
        let delivery: Vec<Event> = h
            .delivery
            .into_iter()
            .filter_map(|d| match d {
                Delivery::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        unique += delivery
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<HashSet<_>>()
            .len();
        expectations.push((
            room.clone(),
            expected(
                Initial {
                    is_live: false,
                    last_active_at: h.before,
                },
                &delivery,
            ),
        ));
        work.extend(delivery.into_iter().map(|e| (room.clone(), e)));
    }
    let started = Instant::now();
    let applied = hammer(&ctx.url, 64, &work, ctx.seed)?;
    let secs = started.elapsed().as_secs_f64();
    if applied != unique {
        return Err(format!(
            "{applied} calls answered applied, but there are {unique} distinct event ids"
        ));
    }
    for (room, want) in &expectations {
        let got = read_state(&mut ctx.svc, room)?;
        let diffs = compare(&got, want, &ctx.weights);
        if !diffs.is_empty() {
            return Err(format!("{room}: {}", diffs.join("; ")));
        }
    }
    Ok(format!(
        "{} calls ({unique} distinct) in {secs:.2} s",
        work.len()
    ))
}

/// One big room (150-200 peers) hammered by 64 connections.
pub fn concurrent_one_room(ctx: &mut Ctx) -> Result<String, String> {
    concurrent(
        ctx,
        "conc1",
        1,
        Shape {
            big_percent: 100,
            big_peers: (150, 200),
            peers: (0, 0),
        },
    )
}

/// Twenty rooms hammered together by 64 connections.
pub fn concurrent_twenty_rooms(ctx: &mut Ctx) -> Result<String, String> {
    concurrent(
        ctx,
        "conc20",
        20,
        Shape {
            big_percent: 0,
            big_peers: (0, 0),
            peers: (5, 25),
        },
    )
}

/// 5,000 joins to one room end with exactly 5,000 present (then 5,000 concurrent leaves, 0).
pub fn hot_room(ctx: &mut Ctx) -> Result<String, String> {
    let t = 1_728_064_800_000_000;
    let room = new_room(ctx, "hot", t)?;
    apply_all(
        &mut ctx.svc,
        &room,
        &[event("hot-open", Action::SessionOpen, "s1", t)],
        false,
    )?;
    let joins: Vec<Event> = (0..5000)
        .map(|i| {
            let class = if i % 4 == 0 {
                RoleClass::Speaker
            } else {
                RoleClass::Listener
            };
            join(
                &format!("hot-j{i}"),
                "s1",
                &format!("peer-{i}"),
                class,
                t + 1000 + i,
            )
        })
        .collect();
    let started = Instant::now();
    for e in &joins {
        // One call, one transaction, one round trip: as 5,000 webhooks would arrive.
        ctx.svc
            .simple_query(&apply_sql(&room, e, false))
            .map_err(q)?;
    }
    let join_secs = started.elapsed().as_secs_f64();
    let state = read_state(&mut ctx.svc, &room)?;
    if (state.listener_count, state.speaker_count) != (3750, 1250) || state.present.len() != 5000 {
        return Err(format!(
            "after 5,000 joins: {} listeners, {} speakers",
            state.listener_count, state.speaker_count
        ));
    }
    // Everyone leaves, from 16 connections at once.
    let leaves: Vec<(String, Event)> = joins
        .iter()
        .map(|j| {
            let mut e = j.clone();
            e.event_id = format!("{}-leave", j.event_id);
            e.action = Action::PeerLeave;
            e.joined_at = Some(j.event_at);
            e.event_at += 3_600_000_000;
            (room.clone(), e)
        })
        .collect();
    let started = Instant::now();
    let applied = hammer(&ctx.url, 16, &leaves, ctx.seed)?;
    if applied != leaves.len() {
        return Err(format!(
            "{applied} of {} leaves answered applied",
            leaves.len()
        ));
    }
    let leave_secs = started.elapsed().as_secs_f64();
    let state = read_state(&mut ctx.svc, &room)?;
    if (state.listener_count, state.speaker_count) != (0, 0) || !state.present.is_empty() {
        return Err(format!("after 5,000 leaves: {state:?}"));
    }
    let note = format!(
        "5,000 sequential joins in {join_secs:.2} s ({:.3} ms each), 5,000 leaves on 16 connections in {leave_secs:.2} s",
        join_secs * 1000.0 / 5000.0
    );
    println!("hot room: {note}");
    Ok(note)
}
