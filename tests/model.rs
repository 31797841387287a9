//! Host tests of the counting model (tests/support/model.rs): the guarantees of issue 3 as
//! hand-written stories, and order/duplication invariance over many generated histories.

#[allow(dead_code)]
mod support;

use support::generate::{deliver, history, Rng, Shape};
use support::model::{expected, Action, Event, Initial, Micros, RoleClass, RoomState};

const S: Micros = 1_000_000;
const T0: Micros = 1_728_064_800 * S; // 2024-10-04T18:00:00Z
const BEFORE: Initial = Initial {
    is_live: false,
    last_active_at: T0 - 3600 * S,
};

fn ev(id: &str, action: Action, session: &str, at: Micros) -> Event {
    Event {
        event_id: id.to_string(),
        action,
        session_id: session.to_string(),
        session_started_at: None,
        peer_id: None,
        role: None,
        role_class: None,
        event_at: at,
        joined_at: None,
    }
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
    // Promotion delivered before the join: the peer is a speaker.
    let early = expected(
        BEFORE,
        &[
            role_change("r1", "s1", "p1", Speaker, T0 + 60 * S, T0 + 10 * S),
            join("j1", "s1", "p1", Listener, T0 + 10 * S),
        ],
    );
    assert_eq!(counts(&early), (0, 1, true));

    // An older demotion delivered after a newer promotion changes nothing.
    let stale = expected(
        BEFORE,
        &[
            join("j1", "s1", "p1", Listener, T0 + 10 * S),
            role_change("r2", "s1", "p1", Speaker, T0 + 90 * S, T0 + 10 * S),
            role_change("r1", "s1", "p1", Listener, T0 + 60 * S, T0 + 10 * S),
        ],
    );
    assert_eq!(counts(&stale), (0, 1, true));

    // Same instant as the join: the role change wins (kind 1 > kind 0).
    let tie = expected(
        BEFORE,
        &[
            role_change("r1", "s1", "p1", Speaker, T0 + 10 * S, T0 + 10 * S),
            join("j1", "s1", "p1", Listener, T0 + 10 * S),
        ],
    );
    assert_eq!(counts(&tie), (0, 1, true));

    // Ignored roles (recorders, beam) never count, whatever the order.
    let ignored = expected(
        BEFORE,
        &[
            join("j1", "s1", "p1", Speaker, T0 + 10 * S),
            role_change("r1", "s1", "p1", Ignored, T0 + 20 * S, T0 + 10 * S),
        ],
    );
    assert_eq!(counts(&ignored), (0, 0, true));
    assert_eq!(
        ignored.present.len(),
        1,
        "an ignored peer is present, just not counted"
    );

    // A role change without its join still makes the peer present, joined at the change.
    let orphan = expected(
        BEFORE,
        &[role_change("r1", "s1", "p1", Listener, T0 + 10 * S, T0)],
    );
    assert_eq!(counts(&orphan), (1, 0, true));
}

#[test]
fn close_ends_everyone_and_late_joins_stay_out() {
    let mut story = vec![
        open("o", "s1", T0),
        join("j1", "s1", "p1", Speaker, T0 + 10 * S),
        join("j2", "s1", "p2", Listener, T0 + 20 * S),
        close("c", "s1", T0 + 100 * S),
        // Delivered after the close but joined before it (a retried webhook).
        join("j3", "s1", "p3", Listener, T0 + 50 * S),
        // Joined exactly at the close instant: not after it, so not present.
        join("j4", "s1", "p4", Listener, T0 + 100 * S),
    ];
    let state = expected(BEFORE, &story);
    assert_eq!(counts(&state), (0, 0, false));
    assert!(state.present.is_empty());
    assert_eq!(state.last_active_at, T0 + 100 * S);

    // Someone joining after the close reopens the session (it was not over after all).
    story.push(join("j5", "s1", "p5", Listener, T0 + 150 * S));
    let reopened = expected(BEFORE, &story);
    assert_eq!(counts(&reopened), (1, 0, true));

    // A second, later close ends that one too; an earlier duplicate close changes nothing.
    story.push(close("c2", "s1", T0 + 200 * S));
    story.push(close("c0", "s1", T0 + 90 * S));
    assert_eq!(counts(&expected(BEFORE, &story)), (0, 0, false));
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
    // A leave reporting an earlier joined_at moves the join to before the close: not present.
    let story = [
        close("c", "s1", T0 + 100 * S),
        join("j1", "s1", "p1", Listener, T0 + 150 * S),
        Event {
            joined_at: Some(T0 + 50 * S),
            ..role_change("r1", "s1", "p1", Listener, T0 + 160 * S, T0)
        },
    ];
    let state = expected(BEFORE, &story);
    assert_eq!(counts(&state), (0, 0, false));
}

/// Any delivery of the same events gives the same room; the generator really exercises the cases.
#[test]
fn generated_histories_are_order_and_duplicate_invariant() {
    let seeds = 3000;
    let (mut live, mut counted, mut dups, mut leave_first, mut rc_first, mut closed_sessions) =
        (0, 0, 0, 0, 0, 0);
    for i in 0..seeds {
        let mut rng = Rng::for_item(0x5EED, i);
        let h = history(&mut rng, Shape::default());
        let truth = expected(
            Initial {
                is_live: false,
                last_active_at: h.before,
            },
            &h.events,
        );
        let init = Initial {
            is_live: false,
            last_active_at: h.before,
        };
        assert_eq!(
            expected(init, &h.delivery),
            truth,
            "seed index {i}: delivery differs"
        );
        let again = deliver(&mut rng, &h.delivery);
        assert_eq!(
            expected(init, &again),
            truth,
            "seed index {i}: re-delivery differs"
        );
        let mut reversed = h.events.clone();
        reversed.reverse();
        assert_eq!(
            expected(init, &reversed),
            truth,
            "seed index {i}: reversed differs"
        );

        live += u32::from(truth.is_live);
        counted += u32::from(truth.listener_count + truth.speaker_count > 0);
        dups += u32::from(h.delivery.len() > h.events.len());
        closed_sessions += u32::from(h.events.iter().any(|e| e.action == Action::SessionClose));
        let pos = |id: &str| h.delivery.iter().position(|e| e.event_id == id);
        let before_join = |action: Action| {
            h.events.iter().filter(|e| e.action == action).any(|e| {
                h.events
                    .iter()
                    .find(|j| j.action == Action::PeerJoin && j.peer_id == e.peer_id)
                    .is_some_and(|j| pos(&e.event_id) < pos(&j.event_id))
            })
        };
        leave_first += u32::from(before_join(Action::PeerLeave));
        rc_first += u32::from(before_join(Action::RoleChange));
    }
    // Each case must show up often enough to matter (the thresholds are far below the real rates).
    for (name, n) in [
        ("live rooms", live),
        ("rooms with counts", counted),
        ("duplicated deliveries", dups),
        ("leave before join", leave_first),
        ("role change before join", rc_first),
        ("closed sessions", closed_sessions),
    ] {
        assert!(
            n > seeds as u32 / 20,
            "only {n} of {seeds} histories have {name}"
        );
    }
    assert!(
        live < seeds as u32,
        "every room ended live: closes are not exercised"
    );
}
