//! Host tests of the counting model (tests/support/model.rs): the guarantees as hand-written
//! stories (the rules of docs/counting.md; snapshot facts: design §6.1), order/duplication invariance
//! over many generated histories, and the function's own parsing and plan of every generated
//! event's webhook body (refusing the bodies it must refuse).

#[allow(dead_code)]
mod support;

use support::generate::{history, reshuffle, Rng, Shape};
use support::model::{
    expected, expected_after, Action, Delivery, Event, Fact, Facts, Initial, Micros, RoleClass,
    RoomState,
};
use support::wire;

const S: Micros = 1_000_000;
const T0: Micros = 1_728_064_800 * S; // 2024-10-04T18:00:00Z
const BEFORE: Initial = Initial {
    is_live: false,
    last_active_at: T0 - 3600 * S,
};

fn ev(id: &str, action: Action, session: &str, at: Micros) -> Event {
    Event::new(id, action, session, at)
}

fn open(id: &str, session: &str, at: Micros) -> Event {
    Event {
        session_started_at: Some(at),
        ..ev(id, Action::SessionOpen, session, at)
    }
}

fn close(id: &str, session: &str, at: Micros) -> Event {
    ev(id, Action::SessionClose, session, at)
}

fn peer(
    id: &str,
    action: Action,
    session: &str,
    peer: &str,
    class: RoleClass,
    at: Micros,
) -> Event {
    let role = match class {
        RoleClass::Speaker => "speaker",
        RoleClass::Listener => "listener",
        RoleClass::Ignored => "__internal_recorder",
    };
    Event {
        peer_id: Some(peer.to_string()),
        role: Some(role.to_string()),
        role_class: Some(class),
        ..ev(id, action, session, at)
    }
}

fn join(id: &str, session: &str, p: &str, class: RoleClass, at: Micros) -> Event {
    peer(id, Action::PeerJoin, session, p, class, at)
}

fn leave(id: &str, session: &str, p: &str, at: Micros, joined: Micros) -> Event {
    Event {
        joined_at: Some(joined),
        ..peer(id, Action::PeerLeave, session, p, RoleClass::Listener, at)
    }
}

fn role_change(
    id: &str,
    session: &str,
    p: &str,
    class: RoleClass,
    at: Micros,
    joined: Micros,
) -> Event {
    Event {
        joined_at: Some(joined),
        ..peer(id, Action::RoleChange, session, p, class, at)
    }
}

/// The room without its peaks, the one part of it that depends on the order of delivery.
fn order_free(state: RoomState) -> RoomState {
    RoomState {
        peaks: Default::default(),
        ..state
    }
}

fn counts(state: &RoomState) -> (u64, u64, bool) {
    (state.listener_count, state.speaker_count, state.is_live)
}

use RoleClass::{Ignored, Listener, Speaker};

#[test]
fn replay_changes_nothing() {
    let story = vec![
        open("o", "s1", T0),
        join("j1", "s1", "p1", Speaker, T0 + 10 * S),
        join("j2", "s1", "p2", Listener, T0 + 20 * S),
        leave("l2", "s1", "p2", T0 + 30 * S, T0 + 20 * S),
        join("j3", "s1", "p3", Listener, T0 + 40 * S),
    ];
    let once = expected(BEFORE, &story);
    assert_eq!(counts(&once), (1, 1, true));

    // Same ids again (retries), and the join of a peer who has left re-sent under a new id.
    let mut replayed = story.clone();
    replayed.extend(story.iter().rev().cloned());
    replayed.push(Event {
        event_id: "j2-replay".into(),
        ..story[2].clone()
    });
    replayed.push(Event {
        event_id: "o-replay".into(),
        ..story[0].clone()
    });
    assert_eq!(expected(BEFORE, &replayed), once);
}

#[test]
fn first_arrival_of_an_id_wins() {
    // The ledger keeps the first payload of an id; a different payload under a known id is ignored.
    let first = join("same-id", "s1", "p1", Speaker, T0);
    let second = leave("same-id", "s1", "p1", T0 + S, T0);
    let state = expected(BEFORE, &[open("o", "s1", T0), first, second]);
    assert_eq!(counts(&state), (0, 1, true));
}

#[test]
fn leave_before_join_stays_absent() {
    let state = expected(
        BEFORE,
        &[
            open("o", "s1", T0),
            leave("l1", "s1", "p1", T0 + 90 * S, T0 + 10 * S),
            join("j1", "s1", "p1", Speaker, T0 + 10 * S),
        ],
    );
    assert_eq!(counts(&state), (0, 0, true));
    assert!(state.present.is_empty());

    // A leave alone (its join never arrived) does not make anyone present either.
    let state = expected(BEFORE, &[leave("l9", "s1", "p9", T0 + 5 * S, T0)]);
    assert_eq!((state.listener_count, state.speaker_count), (0, 0));
    assert!(state.present.is_empty());
}

#[test]
fn role_changes_apply_by_event_time() {
    // (what the story shows, its deliveries, the counts it ends with); p1 is present in each.
    let stories = [
        (
            "promotion delivered before the join: the peer is a speaker",
            vec![
                role_change("r1", "s1", "p1", Speaker, T0 + 60 * S, T0 + 10 * S),
                join("j1", "s1", "p1", Listener, T0 + 10 * S),
            ],
            (0, 1, true),
        ),
        (
            "an older demotion delivered after a newer promotion changes nothing",
            vec![
                join("j1", "s1", "p1", Listener, T0 + 10 * S),
                role_change("r2", "s1", "p1", Speaker, T0 + 90 * S, T0 + 10 * S),
                role_change("r1", "s1", "p1", Listener, T0 + 60 * S, T0 + 10 * S),
            ],
            (0, 1, true),
        ),
        (
            "same instant as the join: the role change wins (kind 1 > kind 0)",
            vec![
                role_change("r1", "s1", "p1", Speaker, T0 + 10 * S, T0 + 10 * S),
                join("j1", "s1", "p1", Listener, T0 + 10 * S),
            ],
            (0, 1, true),
        ),
        (
            "ignored roles (recorders, beam) never count, whatever the order",
            vec![
                join("j1", "s1", "p1", Speaker, T0 + 10 * S),
                role_change("r1", "s1", "p1", Ignored, T0 + 20 * S, T0 + 10 * S),
            ],
            (0, 0, true),
        ),
        (
            "a role change without its join still makes the peer present, joined at the change",
            vec![role_change("r1", "s1", "p1", Listener, T0 + 10 * S, T0)],
            (1, 0, true),
        ),
    ];
    for (story, events, want) in stories {
        let state = expected(BEFORE, &events);
        assert_eq!(counts(&state), want, "{story}");
        assert_eq!(
            state.present.len(),
            1,
            "{story}: p1 is present (an ignored peer too, just not counted)"
        );
    }
}

#[test]
fn a_closed_envelope_session_stays_closed() {
    let mut story = vec![
        open("o", "s1", T0),
        join("j1", "s1", "p1", Speaker, T0 + 10 * S),
        join("j2", "s1", "p2", Listener, T0 + 20 * S),
        close("c", "s1", T0 + 100 * S),
        // Delivered after the close but joined before it (a retried webhook).
        join("j3", "s1", "p3", Listener, T0 + 50 * S),
        // Joined exactly at the close instant.
        join("j4", "s1", "p4", Listener, T0 + 100 * S),
    ];
    let state = expected(BEFORE, &story);
    assert_eq!(counts(&state), (0, 0, false));
    assert!(state.present.is_empty());
    assert_eq!(state.last_active_at, T0 + 100 * S);

    // A join stamped 5 ms after the close (clock skew between 100ms servers), an ignored role
    // joining later, a role change, an open: nothing of s1 brings it back, in any order.
    story.push(join("j5", "s1", "p5", Listener, T0 + 100 * S + 5_000));
    story.push(join("j6", "s1", "p6", Ignored, T0 + 150 * S));
    story.push(role_change(
        "r1",
        "s1",
        "p1",
        Listener,
        T0 + 160 * S,
        T0 + 10 * S,
    ));
    story.push(open("o2", "s1", T0 + 170 * S));
    let after = expected(BEFORE, &story);
    assert_eq!(counts(&after), (0, 0, false));
    assert!(after.present.is_empty());
    story.reverse();
    assert_eq!(order_free(expected(BEFORE, &story)), order_free(after));
}

#[test]
fn legacy_epochs_by_time_and_reused_peer_ids() {
    // The flat format: session "" and a sender that sends the same peer id every time.
    let story = vec![
        open("o1", "", T0),
        join("j1", "", "u1", Listener, T0 + 10 * S),
        leave("l1", "", "u1", T0 + 20 * S, T0 + 10 * S),
        join("j2", "", "u1", Listener, T0 + 30 * S),
    ];
    assert_eq!(
        counts(&expected(BEFORE, &story)),
        (1, 0, true),
        "a rejoin counts again"
    );
    let mut more = story.clone();
    more.push(close("c1", "", T0 + 40 * S));
    assert_eq!(counts(&expected(BEFORE, &more)), (0, 0, false));
    // A new epoch: room.started after room.ended, and the same id joins again.
    more.push(open("o2", "", T0 + 50 * S));
    assert_eq!(counts(&expected(BEFORE, &more)), (0, 0, true));
    more.push(join("j3", "", "u1", Speaker, T0 + 60 * S));
    let epoch2 = expected(BEFORE, &more);
    assert_eq!(counts(&epoch2), (0, 1, true));
    more.reverse();
    assert_eq!(
        order_free(expected(BEFORE, &more)),
        order_free(epoch2),
        "any order"
    );

    // Ties: a leave at the join's instant wins; a join at the close's instant is closed.
    let tie = [
        join("j1", "", "u1", Listener, T0),
        leave("l1", "", "u1", T0, T0),
        join("j2", "", "u2", Listener, T0 + S),
        close("c", "", T0 + S),
    ];
    assert_eq!(counts(&expected(BEFORE, &tie)), (0, 0, false));
    // A late join after the close starts the next epoch by itself.
    let late = [close("c", "", T0), join("j1", "", "u1", Listener, T0 + S)];
    assert_eq!(counts(&expected(BEFORE, &late)), (1, 0, true));
}

#[test]
fn last_active_at_never_passes_received_plus_two_minutes() {
    let ahead = Event {
        received_at: Some(T0),
        ..join("j1", "s1", "p1", Listener, T0 + 86_400 * S)
    };
    assert_eq!(expected(BEFORE, &[ahead]).last_active_at, T0 + 120 * S);
    let activity = Event {
        received_at: Some(T0 + 5 * S),
        ..ev("t1", Action::Activity, "s1", T0 + 3 * S)
    };
    let state = expected(BEFORE, &[activity]);
    assert_eq!(state.last_active_at, T0 + 3 * S);
    assert_eq!(state.current_session, None, "activity creates no session");
    assert!(!state.is_live, "activity never changes is_live");
}

fn facts(observed_at: Micros, facts: Vec<Fact>) -> Delivery {
    Delivery::Facts(Facts {
        observed_at,
        received_at: observed_at + 60 * S,
        facts,
    })
}

fn present_set(session: &str, peers: &[&str]) -> Fact {
    Fact::PresentSet {
        session_id: session.into(),
        peer_ids: peers.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn snapshot_facts_combine_with_webhooks_in_any_order() {
    let webhooks = [
        open("o", "s1", T0),
        join("j1", "s1", "p1", Listener, T0 + 10 * S),
        join("j2", "s1", "p2", Listener, T0 + 20 * S),
        // Joined after the snapshot's time: a snapshot that does not list it cannot end it.
        join("j3", "s1", "p3", Speaker, T0 + 200 * S),
    ];
    let snapshot = facts(
        T0 + 100 * S,
        vec![
            Fact::Peer {
                session_id: "s1".into(),
                peer_id: "p1".into(),
                role: Some("host".into()),
                role_class: Some(Speaker),
                joined_at: Some(T0 + 10 * S),
                left_at: None,
            },
            // p2's leave was lost: the snapshot no longer lists it.
            present_set("s1", &["p1"]),
        ],
    );
    let mut all: Vec<Delivery> = webhooks.iter().cloned().map(Delivery::Event).collect();
    all.push(snapshot.clone());
    let state = expected_after(BEFORE, &all);
    assert_eq!(
        counts(&state),
        (0, 2, true),
        "p1 promoted as observed, p2 gone, p3 stays"
    );
    let mut reordered = vec![snapshot.clone(), snapshot];
    reordered.extend(webhooks.iter().rev().cloned().map(Delivery::Event));
    assert_eq!(
        order_free(expected_after(BEFORE, &reordered)),
        order_free(state),
        "any order, any number of times"
    );

    // A role change later than the snapshot wins over the observed role; an earlier one loses.
    let mut later = all.clone();
    later.push(Delivery::Event(role_change(
        "r1",
        "s1",
        "p1",
        Listener,
        T0 + 150 * S,
        T0,
    )));
    later.push(Delivery::Event(role_change(
        "r0",
        "s1",
        "p1",
        Ignored,
        T0 + 50 * S,
        T0,
    )));
    assert_eq!(counts(&expected_after(BEFORE, &later)), (1, 1, true));

    // 100ms reports the session inactive: a close, for good.
    let mut closed = all;
    closed.push(facts(
        T0 + 300 * S,
        vec![Fact::Session {
            session_id: "s1".into(),
            started_at: Some(T0),
            closed_at: Some(T0 + 250 * S),
        }],
    ));
    assert_eq!(counts(&expected_after(BEFORE, &closed)), (0, 0, false));

    // A peer only listed (no webhook at all) counts as present with no role, so not counted;
    // a later snapshot without it ends it.
    let listed = [
        Delivery::Event(open("o", "s2", T0)),
        facts(T0 + 10 * S, vec![present_set("s2", &["q1"])]),
    ];
    let state = expected_after(BEFORE, &listed);
    assert_eq!(state.present.len(), 1);
    let mut gone = listed.to_vec();
    gone.push(facts(T0 + 20 * S, vec![present_set("s2", &[])]));
    assert!(expected_after(BEFORE, &gone).present.is_empty());
}

#[test]
fn the_twelve_hour_rule_closes_what_started_long_ago() {
    let story = [
        Delivery::Event(open("o", "s1", T0)),
        Delivery::Event(join("j1", "s1", "p1", Listener, T0 + 10 * S)),
        Delivery::Expire(T0 + 12 * 3600 * S),
    ];
    assert_eq!(
        counts(&expected_after(BEFORE, &story)),
        (1, 0, true),
        "not yet 12 h"
    );
    let mut later = story.to_vec();
    later.push(Delivery::Expire(T0 + 12 * 3600 * S + 1));
    let state = expected_after(BEFORE, &later);
    assert_eq!(counts(&state), (0, 0, false));
    // The flat format has no 12-hour limit.
    let flat = [
        Delivery::Event(open("o", "", T0)),
        Delivery::Expire(T0 + 100 * 3600 * S),
    ];
    assert!(expected_after(BEFORE, &flat).is_live);
}

#[test]
fn new_session_starts_clean() {
    let mut story = vec![
        open("oa", "A", T0),
        join("ja1", "A", "a1", Speaker, T0 + 10 * S),
        join("ja2", "A", "a2", Listener, T0 + 20 * S),
        // No leaves and no close for A: 100ms may never send them.
        open("ob", "B", T0 + 3600 * S),
    ];
    let state = expected(BEFORE, &story);
    assert_eq!(counts(&state), (0, 0, true));
    assert_eq!(state.current_session.as_deref(), Some("B"));

    story.push(join("jb1", "B", "b1", Listener, T0 + 3700 * S));
    // A straggler of A delivered now does not leak into B.
    story.push(join("ja3", "A", "a3", Speaker, T0 + 30 * S));
    let state = expected(BEFORE, &story);
    assert_eq!(counts(&state), (1, 0, true));
    assert_eq!(
        state.present.len(),
        4,
        "A's peers are still present in A, just not shown"
    );

    // B's peers reporting B's start make B current even before B's open arrives.
    let unordered = expected(
        BEFORE,
        &[
            Event {
                session_started_at: Some(T0 + 3600 * S),
                ..join("jb1", "B", "b1", Listener, T0 + 3700 * S)
            },
            open("oa", "A", T0),
            join("ja1", "A", "a1", Speaker, T0 + 10 * S),
        ],
    );
    assert_eq!(unordered.current_session.as_deref(), Some("B"));
    assert_eq!(counts(&unordered), (1, 0, true));

    // Equal start times: the larger session id is current.
    let tie = expected(BEFORE, &[open("o1", "s-b", T0), open("o2", "s-a", T0)]);
    assert_eq!(tie.current_session.as_deref(), Some("s-b"));
}

#[test]
fn last_active_at_never_moves_back_and_activity_counts() {
    let state = expected(
        BEFORE,
        &[
            ev("t1", Action::Activity, "s1", T0 + 500 * S),
            join("j1", "s1", "p1", Listener, T0 + 10 * S),
        ],
    );
    assert_eq!(state.last_active_at, T0 + 500 * S);
    let old = expected(
        Initial {
            is_live: true,
            last_active_at: T0 + 900 * S,
        },
        &[open("o", "s1", T0)],
    );
    assert_eq!(old.last_active_at, T0 + 900 * S);
}

#[test]
fn no_session_keeps_is_live() {
    let live = Initial {
        is_live: true,
        last_active_at: T0,
    };
    assert!(expected(live, &[]).is_live);
    assert!(!expected(BEFORE, &[]).is_live);
    assert_eq!(expected(live, &[]).current_session, None);
}

#[test]
fn joined_at_is_the_earliest_report() {
    // A leave's joined_at moves the join before a snapshot that did not list the peer: it left.
    let story = [
        Delivery::Event(join("j1", "s1", "p1", Listener, T0 + 150 * S)),
        facts(T0 + 100 * S, vec![present_set("s1", &[])]),
    ];
    assert_eq!(counts(&expected_after(BEFORE, &story)), (1, 0, true));
    let mut earlier = story.to_vec();
    earlier.push(Delivery::Event(Event {
        joined_at: Some(T0 + 50 * S),
        ..role_change("r1", "s1", "p1", Listener, T0 + 160 * S, T0)
    }));
    assert_eq!(counts(&expected_after(BEFORE, &earlier)), (0, 0, true));
}

/// Delivered in order, a session's peaks are the highest counts it really had; a new session
/// starts from zero; reordered, they are what the room showed (here: a close first, so nothing).
#[test]
fn peaks_are_the_true_peaks_in_order() {
    let story = vec![
        open("o", "s1", T0),
        join("l1", "s1", "p1", Listener, T0 + S),
        join("l2", "s1", "p2", Listener, T0 + 2 * S),
        join("l3", "s1", "p3", Listener, T0 + 3 * S),
        join("sp", "s1", "p4", Speaker, T0 + 4 * S),
        leave("l1-out", "s1", "p1", T0 + 5 * S, T0 + S),
        leave("l2-out", "s1", "p2", T0 + 6 * S, T0 + 2 * S),
        join("l5", "s1", "p5", Listener, T0 + 7 * S),
        join("bot", "s1", "p6", Ignored, T0 + 8 * S),
        close("c", "s1", T0 + 10 * S),
        open("o2", "s2", T0 + 20 * S),
        join("l7", "s2", "p7", Listener, T0 + 21 * S),
    ];
    let peaks = |events: &[Event]| {
        expected(BEFORE, events)
            .peaks
            .into_iter()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        peaks(&story),
        [("s1".to_string(), (3, 1)), ("s2".to_string(), (1, 0))]
    );
    let s1: Vec<Event> = story[..10].iter().rev().cloned().collect();
    assert_eq!(peaks(&s1), [("s1".to_string(), (0, 0))]);
    assert_eq!(
        counts(&expected(BEFORE, &s1)),
        counts(&expected(BEFORE, &story[..10]))
    );
}

/// Any delivery of the same events and facts gives the same room; the generator really exercises
/// the cases; and every event's webhook body goes through the function's parsing and plan.
#[test]
fn generated_histories_are_order_and_duplicate_invariant() {
    let seeds = 3000;
    let mut seen = std::collections::BTreeMap::<&str, u32>::new();
    let mut note = |name: &'static str, yes: bool| *seen.entry(name).or_default() += u32::from(yes);
    for i in 0..seeds {
        let mut rng = Rng::for_item(0x5EED, i);
        let h = history(&mut rng, Shape::default());
        let init = Initial {
            is_live: false,
            last_active_at: h.before,
        };
        // The truth: each event once, in time order, the snapshots after them, the 12-hour rule last.
        let mut truth_order: Vec<Delivery> =
            h.events.iter().cloned().map(Delivery::Event).collect();
        truth_order.extend(h.facts.iter().cloned().map(Delivery::Facts));
        truth_order.extend(h.expire.map(Delivery::Expire));
        // last_active_at depends on when the first copy of an event was received (the cap), so
        // only the rest must not depend on the order.
        // Neither do the peaks: they are what the room showed along the way (see
        // `peaks_are_the_true_peaks_in_order`).
        let order_free = |deliveries: &[Delivery]| RoomState {
            last_active_at: 0,
            ..order_free(expected_after(init, deliveries))
        };
        let truth = expected_after(init, &truth_order);
        let unordered = order_free(&truth_order);
        assert_eq!(
            order_free(&h.delivery),
            unordered,
            "seed index {i}: delivery differs"
        );
        let again = reshuffle(&mut rng, &h.delivery);
        assert_eq!(
            order_free(&again),
            unordered,
            "seed index {i}: re-delivery differs"
        );
        let mut twice = h.delivery.clone();
        twice.extend(again);
        twice.retain(|d| !matches!(d, Delivery::Expire(_)));
        twice.extend(h.expire.map(Delivery::Expire));
        assert_eq!(
            order_free(&twice),
            unordered,
            "seed index {i}: twice differs"
        );

        for e in &h.events {
            wire::check("room-1", e).unwrap_or_else(|m| panic!("seed index {i}: {m}"));
            for r in wire::refused(&mut rng, "room-1", e) {
                wire::check_refused(&r).unwrap_or_else(|m| panic!("seed index {i}: {m}"));
            }
        }

        let events = &h.events;
        let legacy = events.iter().any(|e| e.session_id.is_empty());
        let closes: Vec<&Event> = events
            .iter()
            .filter(|e| e.action == Action::SessionClose)
            .collect();
        let after_close = |class: Option<RoleClass>| {
            events.iter().any(|e| {
                e.action == Action::PeerJoin
                    && !e.session_id.is_empty()
                    && class.is_none_or(|c| e.role_class == Some(c))
                    && closes
                        .iter()
                        .any(|c| c.session_id == e.session_id && c.event_at < e.event_at)
            })
        };
        note("live rooms", truth.is_live);
        note(
            "rooms with counts",
            truth.listener_count + truth.speaker_count > 0,
        );
        note("closed sessions", !closes.is_empty());
        note("joins after a close", after_close(None));
        note("ignored roles after a close", after_close(Some(Ignored)));
        note("snapshot facts", !h.facts.is_empty());
        note("12-hour rule runs", h.expire.is_some());
        note(
            "whole-second event times",
            events.iter().any(|e| !legacy && e.event_at % S == S - 1),
        );
        note(
            "events received before their time",
            events
                .iter()
                .any(|e| e.received_at.is_some_and(|r| r < e.event_at)),
        );
        let mut joins = std::collections::HashMap::<(&str, &str), u32>::new();
        for e in events
            .iter()
            .filter(|e| legacy && e.action == Action::PeerJoin)
        {
            *joins
                .entry((&e.session_id, e.peer_id.as_deref().unwrap_or("")))
                .or_default() += 1;
        }
        note(
            "reused flat-format peer ids",
            joins.values().any(|n| *n > 1),
        );
        note(
            "duplicated deliveries",
            h.delivery.len() > events.len() + h.facts.len(),
        );
    }
    // Each case must show up often enough to matter (the thresholds are far below the real rates).
    for (name, n) in &seen {
        assert!(
            *n > seeds as u32 / 100,
            "only {n} of {seeds} histories have {name}"
        );
    }
    assert!(
        seen["live rooms"] < seeds as u32,
        "every room ended live: closes are not exercised"
    );
}
