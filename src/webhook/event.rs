//! Raw body bytes -> `Parsed`: a handled `Event` or an `Ignored` one (with its reason), for the
//! 100ms envelope and the legacy flat format; the types carry the invariants (a handled event has
//! a room id, a peer event its peer). Both formats read the peer and an ignored event's room id
//! through the same steps. serde_json reads the body's objects as `document::Members` (each
//! member kept as it arrived); each rule then reads the members it needs by their path in the
//! body (`data.room_id`), so an error names the field and what it should be. Which members a rule
//! reads depends on the format and the type, so a repeated key is refused exactly where a rule
//! reads it: the payload of a type we ignore, and keys an action never reads, are not ours to
//! refuse. Strings are borrowed from the body when they contain no escapes; unknown fields are
//! ignored.

use crate::document::{self, Field, Member, Members, Repeated};
use crate::error::Error;
use crate::time::Timestamp;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Longest accepted id, type, room id, session id, peer id or role, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// Whether a string fits the fields passed on to the database: at most [`MAX_FIELD_BYTES`]
/// and no NUL (PostgreSQL text cannot hold NUL: passing one on would fail in the database).
pub fn fits_field(s: &str) -> bool {
    s.len() <= MAX_FIELD_BYTES && !s.contains('\0')
}

/// The longest a 100ms session lasts (µs): 12 h
/// (<https://www.100ms.live/docs/server-side/v2/api-reference/Sessions/object>).
pub const MAX_SESSION_US: i64 = 12 * 3600 * 1_000_000;
/// A time inside `data` may be at most this long before the envelope `timestamp` (µs): twice the
/// longest session leaves room for every honest report.
pub const MAX_DATA_TIME_BEFORE_US: i64 = 2 * MAX_SESSION_US;
/// ... and at most this long after it (µs), the same bound as for the envelope timestamp itself.
pub const MAX_DATA_TIME_AFTER_US: i64 = 120 * 1_000_000;

/// Which wire format the body used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{version,id,type,timestamp,data:{…}}`.
    Envelope,
    /// `{"event":…,"room_id":…,"peer":{…},"timestamp":<ms>}`.
    Flat,
}

impl Format {
    /// Name used in the debug log.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Envelope => "envelope",
            Format::Flat => "flat",
        }
    }
}

/// What a handled event does to the room (the RPC's `p_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A session started.
    SessionOpen,
    /// A session ended (or the room was ended).
    SessionClose,
    /// A peer joined.
    PeerJoin,
    /// A peer left.
    PeerLeave,
    /// A peer's role changed.
    RoleChange,
    /// Something happened (tracks): only `last_active_at` moves.
    Activity,
}

impl Action {
    /// The `p_action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SessionOpen => "session_open",
            Action::SessionClose => "session_close",
            Action::PeerJoin => "peer_join",
            Action::PeerLeave => "peer_leave",
            Action::RoleChange => "role_change",
            Action::Activity => "activity",
        }
    }

    /// Peer events name a peer and need `peer_id`.
    pub fn is_peer_event(self) -> bool {
        matches!(
            self,
            Action::PeerJoin | Action::PeerLeave | Action::RoleChange
        )
    }
}

/// Why an event is acknowledged without touching the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// A type the core does not handle.
    EventTypeNotHandled,
    /// A `.failure` / `.failed` event, which never changes counts.
    FailureEvent,
}

impl IgnoreReason {
    /// The `reason` in the response body.
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::EventTypeNotHandled => "event type not handled",
            IgnoreReason::FailureEvent => "failure event",
        }
    }
}

/// How the core treats an event type (design §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Applied through the RPC.
    Handled(Action),
    /// Acknowledged and ignored: a `.failure` / `.failed` event (never changes counts) or any
    /// other type.
    Ignored(IgnoreReason),
}

/// The event types the function acts on (100ms names, then the spec / legacy flat names) and
/// their action: the one copy of design §5's table. The fuzzer and the bench build read it;
/// tests/bench_smoke.test.ts checks the TypeScript copies against it.
pub const EVENT_ACTIONS: &[(&str, Action)] = &[
    ("session.open.success", Action::SessionOpen),
    ("session.close.success", Action::SessionClose),
    ("room.end.success", Action::SessionClose),
    ("peer.join.success", Action::PeerJoin),
    ("peer.leave.success", Action::PeerLeave),
    ("role.change.success", Action::RoleChange),
    ("track.add.success", Action::Activity),
    ("track.update.success", Action::Activity),
    ("track.remove.success", Action::Activity),
    ("room.started", Action::SessionOpen),
    ("room.ended", Action::SessionClose),
    ("peer.joined", Action::PeerJoin),
    ("peer.left", Action::PeerLeave),
    ("track.updated", Action::Activity),
];

/// Maps a received type name (100ms, spec or legacy name) to its kind.
pub fn kind_of(event_type: &str) -> Kind {
    match EVENT_ACTIONS.iter().find(|(name, _)| *name == event_type) {
        Some(&(_, action)) => Kind::Handled(action),
        None if event_type.ends_with(".failure") || event_type.ends_with(".failed") => {
            Kind::Ignored(IgnoreReason::FailureEvent)
        }
        None => Kind::Ignored(IgnoreReason::EventTypeNotHandled),
    }
}

/// The event's own times from `data` (absent when not sent or the Go zero time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Times {
    /// `data.joined_at`.
    pub joined_at: Option<Timestamp>,
    /// `data.left_at`.
    pub left_at: Option<Timestamp>,
    /// `data.role_changed_at`.
    pub role_changed_at: Option<Timestamp>,
    /// `data.session_started_at`.
    pub session_started_at: Option<Timestamp>,
    /// `data.session_stopped_at`.
    pub session_stopped_at: Option<Timestamp>,
}

/// What every valid body has, handled or not: what the log line and the freshness check read.
#[derive(Debug, Clone, PartialEq)]
pub struct Head<'a> {
    /// Wire format.
    pub format: Format,
    /// Envelope `id`, or `sha256:<hex of the raw body>` for the flat format.
    pub id: Cow<'a, str>,
    /// The type as received.
    pub event_type: Cow<'a, str>,
    /// Envelope `timestamp`, or the flat format's millisecond `timestamp`.
    pub timestamp: Timestamp,
    /// `is_replay: true`, at the top level or in `data` (100ms's replay API marks re-sent
    /// deliveries so; where is not documented). Never set in the flat format.
    pub replay: bool,
}

/// The peer a peer event names (`data.peer_id`/`data.role`; flat: `peer.id`/`peer.role`).
#[derive(Debug, Clone, PartialEq)]
pub struct Peer<'a> {
    /// Peer id.
    pub id: Cow<'a, str>,
    /// Role as received; always present for role changes.
    pub role: Option<Cow<'a, str>>,
    /// `user_id` as received (the app's own id for the user), when sent.
    pub user_id: Option<Cow<'a, str>>,
    /// `user_name` as received (a hash in HIPAA workspaces), when sent.
    pub user_name: Option<Cow<'a, str>>,
}

/// A validated event of a type the function acts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Id, type, timestamp, format, replay mark.
    pub head: Head<'a>,
    /// What the event does to the room.
    pub action: Action,
    /// What `timestamp` means where it stands in for an event time: itself, except that an
    /// envelope timestamp with no fraction digits means the end of its second (+999,999 µs), the
    /// one sub-second rule (100ms truncates envelope timestamps to whole seconds).
    pub stand_in_time: Timestamp,
    /// `data.room_id` (flat: `room_id`).
    pub room_id: Cow<'a, str>,
    /// `data.session_id`: never empty in the envelope format; `""` in the flat format.
    pub session_id: Cow<'a, str>,
    /// The peer, for peer events (and only for them).
    pub peer: Option<Peer<'a>>,
    /// Times from `data` (all absent in the flat format).
    pub times: Times,
}

/// A valid body of a type the function does not act on: only what the log line needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Ignored<'a> {
    /// Id, type, timestamp, format, replay mark.
    pub head: Head<'a>,
    /// Why it is ignored.
    pub reason: IgnoreReason,
    /// The room id when it happens to be a valid string (for the log); otherwise dropped: the
    /// payload of a type we ignore is not ours to refuse.
    pub room_id: Option<Cow<'a, str>>,
}

/// A parsed body: an event to apply, or one to acknowledge and ignore.
// One short-lived value per request: boxing `Event` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed<'a> {
    /// A type the function acts on.
    Handled(Event<'a>),
    /// Any other type.
    Ignored(Ignored<'a>),
}

impl<'a> Parsed<'a> {
    /// What both kinds have.
    pub fn head(&self) -> &Head<'a> {
        match self {
            Parsed::Handled(event) => &event.head,
            Parsed::Ignored(ignored) => &ignored.head,
        }
    }

    /// The room id, when known (always for handled events).
    pub fn room_id(&self) -> Option<&Cow<'a, str>> {
        match self {
            Parsed::Handled(event) => Some(&event.room_id),
            Parsed::Ignored(ignored) => ignored.room_id.as_ref(),
        }
    }
}

/// The members of a body that hold the objects the rules read inside it (envelope `data`, flat
/// `peer`): read in the same pass as the body.
const NESTED: &[&str] = &["data", "peer"];

/// The key a field path names: `data.room_id` -> `room_id` (`data` and the flat format's `peer`
/// are the only objects read inside a body).
fn key(field: &'static str) -> &'static str {
    field
        .strip_prefix("data.")
        .or_else(|| field.strip_prefix("peer."))
        .unwrap_or(field)
}

/// The member `field` names in `object`. A repeated key is refused here, where a rule reads it:
/// two parsers could disagree about which occurrence counts.
fn member<'t, 'a>(
    object: &'t Members<'a>,
    field: &'static str,
) -> Result<Option<&'t Member<'a>>, Error> {
    object.get(key(field)).map_err(|Repeated| {
        Error::InvalidJson(format!("{field}: duplicate field `{}`", key(field)))
    })
}

/// A member as the rules read it; `null` counts as absent.
fn take<'a>(object: &Members<'a>, field: &'static str) -> Result<Option<Field<'a>>, Error> {
    let value = match member(object, field)? {
        None => return Ok(None),
        Some(value) => decode(value, field)?,
    };
    Ok(Some(value).filter(|value| *value != Field::Null))
}

fn decode<'a>(value: &Member<'a>, field: &'static str) -> Result<Field<'a>, Error> {
    match value {
        Member::Raw(raw) => {
            Field::from_raw(raw).map_err(|e| Error::InvalidJson(format!("{field}: {e}")))
        }
        Member::Value(value) => Ok(value.clone()),
        Member::Object(_) => Ok(Field::Object),
    }
}

/// A member that must be an object when present (`null` counts as absent).
fn object<'t, 'a>(
    object: &'t Members<'a>,
    field: &'static str,
) -> Result<Option<Cow<'t, Members<'a>>>, Error> {
    let not_an_object = Error::InvalidField {
        field,
        expected: "an object",
    };
    match member(object, field)? {
        None | Some(Member::Value(Field::Null)) => Ok(None),
        Some(Member::Object(members)) => Ok(Some(Cow::Borrowed(members))),
        Some(Member::Raw(raw)) if raw.get() == "null" => Ok(None),
        Some(Member::Raw(raw)) => Members::of(raw)
            .map(Cow::Owned)
            .map(Some)
            .ok_or(not_an_object),
        Some(Member::Value(_)) => Err(not_an_object),
    }
}

/// A string field: right type, not empty (unless allowed), not too long.
fn string<'a>(
    value: Option<Field<'a>>,
    field: &'static str,
    allow_empty: bool,
) -> Result<Option<Cow<'a, str>>, Error> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => {
            if s.len() > MAX_FIELD_BYTES {
                Err(Error::FieldTooLong {
                    field,
                    max: MAX_FIELD_BYTES,
                })
            } else if s.is_empty() && !allow_empty {
                Err(Error::InvalidField {
                    field,
                    expected: "a non-empty string",
                })
            } else if !fits_field(&s) {
                // A NUL (the length is checked above): the database would answer 503, which
                // 100ms would retry for ever. Refuse it here instead.
                Err(Error::InvalidField {
                    field,
                    expected: "a string without NUL characters",
                })
            } else {
                Ok(Some(s))
            }
        }
        Some(_) => Err(Error::InvalidField {
            field,
            expected: "a string",
        }),
    }
}

fn required<'a>(value: Option<Field<'a>>, field: &'static str) -> Result<Cow<'a, str>, Error> {
    string(value, field, false)?.ok_or(Error::MissingField(field))
}

/// A room or session id: required, and never a URL dot segment (reconcile puts these ids in
/// 100ms API paths, where `.` and `..` would name another resource: `hms_api::is_dot_segment`).
fn path_id<'a>(value: Option<Field<'a>>, field: &'static str) -> Result<Cow<'a, str>, Error> {
    let id = required(value, field)?;
    if crate::reconcile::hms_api::is_dot_segment(&id) {
        return Err(Error::InvalidField {
            field,
            expected: "an id other than \".\" or \"..\" (URL dot segments)",
        });
    }
    Ok(id)
}

/// An optional RFC 3339 time; the Go zero time counts as absent.
fn time(value: Option<&Field<'_>>, field: &'static str) -> Result<Option<Timestamp>, Error> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Timestamp::parse_rfc3339(s).map_err(|e| Error::InvalidTimestamp {
            field,
            reason: e.to_string().into(),
        }),
        Some(_) => Err(Error::InvalidField {
            field,
            expected: "an RFC 3339 timestamp string",
        }),
    }
}

/// Parses and validates a webhook body.
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, Error> {
    if body.is_empty() {
        return Err(Error::EmptyBody);
    }
    let text = std::str::from_utf8(body)?;
    let top = document::read_members(text, NESTED)?.ok_or(Error::NotAnObject)?;
    // The legacy flat format is recognised by its top-level `event` key.
    match take(&top, "event")? {
        Some(event_type) => flat(event_type, &top, body),
        None => envelope(&top),
    }
}

/// `is_replay` (at `field`): absent, null or false is not a replay; anything but a boolean is
/// refused (a string "true" is not what 100ms documents).
fn replay_flag(object: &Members<'_>, field: &'static str) -> Result<bool, Error> {
    match take(object, field)? {
        None | Some(Field::Bool(false)) => Ok(false),
        Some(Field::Bool(true)) => Ok(true),
        Some(_) => Err(Error::InvalidField {
            field,
            expected: "a boolean",
        }),
    }
}

/// A valid body of a type the function ignores. Its room id is kept for the log when it is a valid
/// string and otherwise dropped (repeated, or of another type): the payload of a type we ignore
/// is not ours to refuse. Only a string that cannot be decoded (a lone surrogate) is refused.
fn ignore<'a>(
    head: Head<'a>,
    reason: IgnoreReason,
    object: &Members<'a>,
    room_field: &'static str,
) -> Result<Parsed<'a>, Error> {
    let room_id = match member(object, room_field) {
        Ok(Some(value)) => string(Some(decode(value, room_field)?), room_field, false)
            .ok()
            .flatten(),
        Ok(None) | Err(_) => None,
    };
    Ok(Parsed::Ignored(Ignored {
        head,
        reason,
        room_id,
    }))
}

/// Where a format names the peer: the paths of its members (their keys are the last segment).
struct PeerFields {
    id: &'static str,
    role: &'static str,
    user_id: &'static str,
    user_name: &'static str,
}

/// The envelope's peer is in `data`.
const ENVELOPE_PEER: PeerFields = PeerFields {
    id: "data.peer_id",
    role: "data.role",
    user_id: "data.user_id",
    user_name: "data.user_name",
};

/// The flat format's peer is the `peer` object.
const FLAT_PEER: PeerFields = PeerFields {
    id: "peer.id",
    role: "peer.role",
    user_id: "peer.user_id",
    user_name: "peer.user_name",
};

/// The peer of a peer event, read alike in both formats from the object that holds it.
fn peer<'a>(object: &Members<'a>, action: Action, fields: &PeerFields) -> Result<Peer<'a>, Error> {
    let id = required(take(object, fields.id)?, fields.id)?;
    let role = take(object, fields.role)?;
    let role = if action == Action::RoleChange {
        // The new role is the whole point of a role change.
        Some(required(role, fields.role)?)
    } else {
        string(role, fields.role, true)?
    };
    let user_id = string(take(object, fields.user_id)?, fields.user_id, true)?;
    let user_name = string(take(object, fields.user_name)?, fields.user_name, true)?;
    Ok(Peer {
        id,
        role,
        user_id,
        user_name,
    })
}

/// Refuses a time inside `data` too far from the envelope `timestamp`: no single event may pin a
/// room or the feed with a time far in the future or past (design §5).
fn check_data_time(
    envelope: Timestamp,
    time: Option<Timestamp>,
    field: &'static str,
) -> Result<Option<Timestamp>, Error> {
    let Some(t) = time else {
        return Ok(None);
    };
    let offset = t.micros().saturating_sub(envelope.micros());
    if offset < -MAX_DATA_TIME_BEFORE_US {
        Err(Error::InvalidTimestamp {
            field,
            reason: "more than 24 hours before the envelope timestamp".into(),
        })
    } else if offset > MAX_DATA_TIME_AFTER_US {
        Err(Error::InvalidTimestamp {
            field,
            reason: "more than 120 seconds after the envelope timestamp".into(),
        })
    } else {
        Ok(Some(t))
    }
}

fn envelope<'a>(top: &Members<'a>) -> Result<Parsed<'a>, Error> {
    let id = required(take(top, "id")?, "id")?;
    let event_type = required(take(top, "type")?, "type")?;
    let timestamp_value = take(top, "timestamp")?;
    // "YYYY-MM-DDTHH:MM:SS" is 19 bytes; a fraction, if any, starts right after it.
    let whole_seconds =
        !matches!(&timestamp_value, Some(Field::Str(s)) if s.as_bytes().get(19) == Some(&b'.'));
    let timestamp =
        time(timestamp_value.as_ref(), "timestamp")?.ok_or(Error::MissingField("timestamp"))?;
    let stand_in_time = if whole_seconds {
        timestamp.end_of_second()
    } else {
        timestamp
    };
    let data = object(top, "data")?.ok_or(Error::MissingField("data"))?;
    let replay = replay_flag(top, "is_replay")? | replay_flag(&data, "data.is_replay")?;
    let head = Head {
        format: Format::Envelope,
        id,
        event_type,
        timestamp,
        replay,
    };
    let action = match kind_of(&head.event_type) {
        Kind::Handled(action) => action,
        // The envelope is valid; the payload of types we ignore is not our business.
        Kind::Ignored(reason) => return ignore(head, reason, &data, "data.room_id"),
    };

    let room_id = path_id(take(&data, "data.room_id")?, "data.room_id")?;
    // Every 100ms event type the function acts on carries its session (the event catalogue,
    // https://www.100ms.live/docs/server-side/v2/how-to-guides/configure-webhooks/webhook), and
    // "" is the flat format's: without it an event could take over the room's current session.
    let session_id = path_id(take(&data, "data.session_id")?, "data.session_id")?;
    let peer = if action.is_peer_event() {
        Some(peer(&data, action, &ENVELOPE_PEER)?)
    } else {
        None
    };

    // Only the times the action reads: one it does not read is not ours to refuse.
    let data_time = |field: &'static str| {
        check_data_time(timestamp, time(take(&data, field)?.as_ref(), field)?, field)
    };
    let mut times = Times {
        session_started_at: data_time("data.session_started_at")?,
        ..Times::default()
    };
    match action {
        Action::PeerJoin => times.joined_at = data_time("data.joined_at")?,
        Action::PeerLeave => {
            times.left_at = data_time("data.left_at")?;
            times.joined_at = data_time("data.joined_at")?;
        }
        Action::RoleChange => {
            times.role_changed_at = data_time("data.role_changed_at")?;
            times.joined_at = data_time("data.joined_at")?;
        }
        Action::SessionClose => times.session_stopped_at = data_time("data.session_stopped_at")?,
        Action::SessionOpen | Action::Activity => {}
    }

    Ok(Parsed::Handled(Event {
        head,
        action,
        stand_in_time,
        room_id,
        session_id,
        peer,
        times,
    }))
}

fn flat_timestamp(value: Option<Field<'_>>) -> Result<Timestamp, Error> {
    const FIELD: &str = "timestamp";
    let invalid = |reason: &'static str| Error::InvalidTimestamp {
        field: FIELD,
        reason: reason.into(),
    };
    match value {
        None | Some(Field::Null) => Err(Error::MissingField(FIELD)),
        Some(Field::Unsigned(ms)) => Timestamp::from_epoch_ms(ms)
            .ok_or_else(|| invalid("milliseconds since epoch out of range")),
        Some(Field::Negative(_)) => Err(invalid("milliseconds must not be negative")),
        Some(Field::Float(ms)) if ms < 0.0 => Err(invalid("milliseconds must not be negative")),
        // serde_json reads a fraction, an exponent, or an integer beyond u64 as a float (and one
        // beyond a double's range is infinite: `Field::from_raw`).
        Some(Field::Float(_)) => Err(invalid("milliseconds must be an integer below 2^64")),
        Some(_) => Err(Error::InvalidField {
            field: FIELD,
            expected: "an integer number of milliseconds since the epoch",
        }),
    }
}

fn flat<'a>(event_type: Field<'a>, top: &Members<'a>, body: &[u8]) -> Result<Parsed<'a>, Error> {
    let event_type = required(Some(event_type), "event")?;
    let timestamp = flat_timestamp(take(top, "timestamp")?)?;
    let head = Head {
        format: Format::Flat,
        // The flat format has no id: the body's hash makes identical redeliveries duplicates.
        id: Cow::Owned(format!("sha256:{}", hex::encode(Sha256::digest(body)))),
        event_type,
        timestamp,
        replay: false,
    };
    let action = match kind_of(&head.event_type) {
        Kind::Handled(action) => action,
        Kind::Ignored(reason) => return ignore(head, reason, top, "room_id"),
    };
    let room_id = path_id(take(top, "room_id")?, "room_id")?;
    let peer = if action.is_peer_event() {
        let object = object(top, "peer")?.ok_or(Error::MissingField("peer"))?;
        Some(peer(&object, action, &FLAT_PEER)?)
    } else {
        None
    };
    Ok(Parsed::Handled(Event {
        head,
        action,
        // Millisecond timestamps stand for themselves.
        stand_in_time: timestamp,
        room_id,
        session_id: Cow::Borrowed(""),
        peer,
        times: Times::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap().unwrap()
    }

    const JOIN: &str = r#"{
      "version": "2.0",
      "id": "7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81",
      "account_id": "64f1a2b3c4d5e6f708192a3b",
      "timestamp": "2024-10-04T18:03:10Z",
      "type": "peer.join.success",
      "data": {
        "room_id": "6501c1d2e3f4a5b6c7d8e9f0",
        "room_name": "friday-night-jazz",
        "session_id": "6702a7b8c9d0e1f2a3b4c5d6",
        "template_id": "6501c0ffee0123456789abcd",
        "peer_id": "a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845",
        "user_id": "usr_1907",
        "user_name": "Ravi",
        "user_data": "{\"avatar\":\"r7.png\"}",
        "role": "listener",
        "type": "regular",
        "joined_at": "2024-10-04T18:03:10.55810264Z",
        "session_started_at": "2024-10-04T18:00:02.183742915Z"
      }
    }"#;

    fn with_data(event_type: &str, data: &str) -> String {
        format!(
            r#"{{"version":"2.0","id":"e1","timestamp":"2024-10-04T18:03:10Z","type":"{event_type}","data":{data}}}"#
        )
    }

    fn err(body: &str) -> Error {
        parse(body.as_bytes()).unwrap_err()
    }

    fn handled(body: &[u8]) -> Event<'_> {
        match parse(body).unwrap() {
            Parsed::Handled(event) => event,
            other => panic!("expected a handled event, got {other:?}"),
        }
    }

    fn ignored(body: &[u8]) -> Ignored<'_> {
        match parse(body).unwrap() {
            Parsed::Ignored(ignored) => ignored,
            other => panic!("expected an ignored event, got {other:?}"),
        }
    }

    fn peer_id<'e>(e: &'e Event<'_>) -> Option<&'e str> {
        e.peer.as_ref().map(|p| &*p.id)
    }

    fn role<'e>(e: &'e Event<'_>) -> Option<&'e str> {
        e.peer.as_ref().and_then(|p| p.role.as_deref())
    }

    const FAILURE: Kind = Kind::Ignored(IgnoreReason::FailureEvent);
    const UNHANDLED: Kind = Kind::Ignored(IgnoreReason::EventTypeNotHandled);

    #[test]
    fn parses_the_documented_join() {
        let e = handled(JOIN.as_bytes());
        assert_eq!(e.head.format, Format::Envelope);
        assert_eq!(e.head.id, "7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81");
        assert_eq!(e.action, Action::PeerJoin);
        assert_eq!(e.head.timestamp, ts("2024-10-04T18:03:10Z"));
        assert_eq!(e.room_id, "6501c1d2e3f4a5b6c7d8e9f0");
        assert_eq!(e.session_id, "6702a7b8c9d0e1f2a3b4c5d6");
        assert_eq!(peer_id(&e), Some("a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845"));
        assert_eq!(role(&e), Some("listener"));
        assert_eq!(e.times.joined_at, Some(ts("2024-10-04T18:03:10.558102Z")));
        assert_eq!(
            e.times.session_started_at,
            Some(ts("2024-10-04T18:00:02.183742Z"))
        );
        // Strings without escapes are borrowed from the body.
        assert!(matches!(e.head.id, Cow::Borrowed(_)));
        assert!(matches!(e.room_id, Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = with_data(
            "peer.join.success",
            r#"{"room_id":"r\u00e9\"1","session_id":"s","peer_id":"p","role":"Ho\u0073t"}"#,
        );
        let e = handled(body.as_bytes());
        assert_eq!(e.room_id, "ré\"1");
        assert_eq!(role(&e), Some("Host"));
    }

    #[test]
    fn type_mapping() {
        let cases = [
            ("session.open.success", Kind::Handled(Action::SessionOpen)),
            ("room.started", Kind::Handled(Action::SessionOpen)),
            ("session.close.success", Kind::Handled(Action::SessionClose)),
            ("room.end.success", Kind::Handled(Action::SessionClose)),
            ("room.ended", Kind::Handled(Action::SessionClose)),
            ("peer.join.success", Kind::Handled(Action::PeerJoin)),
            ("peer.joined", Kind::Handled(Action::PeerJoin)),
            ("peer.leave.success", Kind::Handled(Action::PeerLeave)),
            ("peer.left", Kind::Handled(Action::PeerLeave)),
            ("role.change.success", Kind::Handled(Action::RoleChange)),
            ("track.add.success", Kind::Handled(Action::Activity)),
            ("track.update.success", Kind::Handled(Action::Activity)),
            ("track.remove.success", Kind::Handled(Action::Activity)),
            ("track.updated", Kind::Handled(Action::Activity)),
            ("peer.join.failure", FAILURE),
            ("role.change.failure", FAILURE),
            ("recording.failed", FAILURE),
            ("recording.success", UNHANDLED),
            ("hls.started.success", UNHANDLED),
            ("PEER.JOIN.SUCCESS", UNHANDLED),
        ];
        for (t, kind) in cases {
            assert_eq!(kind_of(t), kind, "{t}");
        }
    }

    #[test]
    fn envelope_errors_name_the_field() {
        assert_eq!(err(""), Error::EmptyBody);
        assert_eq!(parse(b"{\"id\":\"\xff\"}").unwrap_err(), Error::InvalidUtf8);
        assert!(matches!(err("{"), Error::InvalidJson(_)));
        assert!(matches!(err("{} x"), Error::InvalidJson(_)));
        assert_eq!(err("[]"), Error::NotAnObject);
        assert_eq!(err("\"x\""), Error::NotAnObject);
        assert_eq!(err("null"), Error::NotAnObject);
        assert_eq!(err("{}"), Error::MissingField("id"));
        assert_eq!(err(r#"{"id":"x"}"#), Error::MissingField("type"));
        assert_eq!(
            err(r#"{"id":"x","type":"t"}"#),
            Error::MissingField("timestamp")
        );
        assert_eq!(
            err(r#"{"id":"x","type":"t","timestamp":"2024-10-04T18:03:10Z"}"#),
            Error::MissingField("data")
        );
        assert_eq!(
            err(r#"{"id":"x","type":"t","timestamp":"2024-10-04T18:03:10Z","data":[]}"#),
            Error::InvalidField {
                field: "data",
                expected: "an object"
            }
        );
        assert_eq!(
            err(r#"{"id":7,"type":"t","timestamp":"x","data":{}}"#),
            Error::InvalidField {
                field: "id",
                expected: "a string"
            }
        );
        assert_eq!(
            err(r#"{"id":"","type":"t","timestamp":"x","data":{}}"#),
            Error::InvalidField {
                field: "id",
                expected: "a non-empty string"
            }
        );
        assert!(matches!(
            err(r#"{"id":"x","type":"t","timestamp":"yesterday","data":{}}"#),
            Error::InvalidTimestamp {
                field: "timestamp",
                ..
            }
        ));
        assert_eq!(
            err(r#"{"id":"x","type":"t","timestamp":"0001-01-01T00:00:00Z","data":{}}"#),
            Error::MissingField("timestamp")
        );
        assert_eq!(
            err(r#"{"id":"x","type":"t","timestamp":1728064990,"data":{}}"#),
            Error::InvalidField {
                field: "timestamp",
                expected: "an RFC 3339 timestamp string"
            }
        );
    }

    /// `Error::InvalidJson` naming `field` as repeated.
    fn repeated(body: &str, field: &str) {
        match parse(body.as_bytes()) {
            Err(Error::InvalidJson(m)) => assert!(
                m.starts_with(&format!("{field}: duplicate field")),
                "{body}: {m}"
            ),
            other => panic!("{body}: expected {field} refused as repeated, got {other:?}"),
        }
    }

    #[test]
    fn a_repeated_key_is_refused_where_the_rules_read_it() {
        // Two parsers could disagree about which occurrence counts; refuse instead.
        let join = |data: &str| with_data("peer.join.success", data);
        let base = r#""room_id":"r","session_id":"s","peer_id":"p","role":"x""#;
        repeated(
            &join(r#"{"room_id":"a","room_id":"b","peer_id":"p"}"#),
            "data.room_id",
        );
        for key in ["session_id", "peer_id", "role", "user_id", "user_name"] {
            let body = join(&format!(r#"{{{base},"{key}":"y","{key}":"y"}}"#));
            repeated(&body, &format!("data.{key}"));
        }
        for key in ["joined_at", "session_started_at", "is_replay"] {
            let body = join(&format!(r#"{{{base},"{key}":null,"{key}":null}}"#));
            repeated(&body, &format!("data.{key}"));
        }
        let leave = with_data(
            "peer.leave.success",
            &format!(r#"{{{base},"left_at":null,"left_at":null}}"#),
        );
        repeated(&leave, "data.left_at");
        // Keys are compared unescaped.
        repeated(
            &join(&format!(r#"{{{base},"rol\u0065":"y"}}"#)),
            "data.role",
        );
        let top = r#""id":"e","type":"peer.join.success","timestamp":"2024-10-04T18:03:10Z""#;
        let data = format!(r#""data":{{{base}}}"#);
        for (extra, field) in [
            (r#""id":"f""#, "id"),
            (r#""type":"t""#, "type"),
            (r#""timestamp":"2024-10-04T18:03:11Z""#, "timestamp"),
            (r#""is_replay":false,"is_replay":true"#, "is_replay"),
            (data.as_str(), "data"),
        ] {
            repeated(&format!("{{{top},{data},{extra}}}"), field);
        }
        // A key is checked where its rule reads it, in the rules' order: a bad `id` is named
        // before a repeated `type`.
        let both = format!(r#"{{"id":7,{top},"type":"u",{data}}}"#).replace(r#""id":"e","#, "");
        assert_eq!(
            err(&both),
            Error::InvalidField {
                field: "id",
                expected: "a string"
            }
        );
        let flat = |rest: &str| format!(r#"{{"event":"peer.joined","timestamp":1,{rest}}}"#);
        let peer = r#""room_id":"r","peer":{"id":"p","role":"x"}"#;
        for (extra, field) in [
            (r#""event":"peer.left""#, "event"),
            (r#""timestamp":2"#, "timestamp"),
            (r#""room_id":"s""#, "room_id"),
            (r#""peer":{"id":"q"}"#, "peer"),
        ] {
            repeated(&flat(&format!("{peer},{extra}")), field);
        }
        for key in ["id", "role", "user_id", "user_name"] {
            let body = flat(&format!(
                r#""room_id":"r","peer":{{"id":"p","role":"x","{key}":"y","{key}":"y"}}"#
            ));
            repeated(&body, &format!("peer.{key}"));
        }
    }

    #[test]
    fn a_repeated_key_the_rules_do_not_read_is_not_refused() {
        // The payload of a type we ignore is not ours to refuse: its room id, repeated, is only
        // left out of the log.
        let recording = with_data("recording.success", r#"{"room_id":"a","room_id":"b"}"#);
        let e = ignored(recording.as_bytes());
        assert_eq!(e.reason, IgnoreReason::EventTypeNotHandled);
        assert_eq!(e.room_id, None);
        let failure = with_data("peer.join.failure", r#"{"room_id":"a","room_id":"a"}"#);
        assert_eq!(ignored(failure.as_bytes()).room_id, None);
        let flat = br#"{"event":"recording.success","room_id":"a","room_id":"b","timestamp":1}"#;
        assert_eq!(ignored(flat).room_id, None);
        // A key the event's action never reads.
        let base = r#""room_id":"r","session_id":"s","peer_id":"p","role":"x""#;
        for (event_type, key) in [
            ("peer.join.success", "left_at"),
            ("peer.join.success", "role_changed_at"),
            ("peer.join.success", "session_stopped_at"),
            ("peer.leave.success", "role_changed_at"),
            ("session.open.success", "peer_id"),
            ("session.open.success", "role"),
            ("session.open.success", "joined_at"),
            ("track.add.success", "user_id"),
            ("peer.join.success", "room_name"),
        ] {
            let time = r#""2024-10-04T18:03:10Z""#;
            let body = with_data(
                event_type,
                &format!(r#"{{{base},"{key}":{time},"{key}":{time}}}"#),
            );
            let e = handled(body.as_bytes());
            assert_eq!(e.room_id, "r", "{event_type} {key}");
        }
        // Top-level keys only the other format reads.
        let top = r#""id":"e","type":"peer.join.success","timestamp":"2024-10-04T18:03:10Z""#;
        let body = format!(
            r#"{{{top},"room_id":"a","room_id":"b","peer":{{}},"peer":1,"event":null,"data":{{{base}}}}}"#
        );
        assert_eq!(handled(body.as_bytes()).room_id, "r");
        let flat = r#"{"event":"room.started","room_id":"r","timestamp":1,"id":"a","id":"b","type":1,"type":2,"is_replay":1,"is_replay":2,"data":{"room_id":1,"room_id":2},"data":3,"peer":{"id":"p","id":"q"}}"#;
        assert_eq!(handled(flat.as_bytes()).room_id, "r");
        let peer = r#"{"event":"peer.joined","room_id":"r","timestamp":1,"peer":{"id":"p","name":"a","name":"b"}}"#;
        assert_eq!(peer_id(&handled(peer.as_bytes())), Some("p"));
    }

    #[test]
    fn dot_segment_room_and_session_ids_are_refused() {
        let expected = "an id other than \".\" or \"..\" (URL dot segments)";
        for id in [".", ".."] {
            let room = format!(r#"{{"room_id":"{id}","session_id":"s","peer_id":"p","role":"x"}}"#);
            assert_eq!(
                err(&with_data("peer.join.success", &room)),
                Error::InvalidField {
                    field: "data.room_id",
                    expected
                }
            );
            let session = format!(r#"{{"room_id":"r","session_id":"{id}"}}"#);
            assert_eq!(
                err(&with_data("session.open.success", &session)),
                Error::InvalidField {
                    field: "data.session_id",
                    expected
                }
            );
            let flat =
                format!(r#"{{"event":"session.open.success","room_id":"{id}","timestamp":1}}"#);
            assert_eq!(
                err(&flat),
                Error::InvalidField {
                    field: "room_id",
                    expected
                }
            );
        }
        // Only the whole id: dots inside an id are fine.
        let room = r#"{"room_id":"...","session_id":"a.b","peer_id":"..","role":"x"}"#;
        assert!(parse(with_data("peer.join.success", room).as_bytes()).is_ok());
    }

    #[test]
    fn handled_types_need_room_and_peer() {
        assert_eq!(
            err(&with_data("peer.join.success", r#"{"peer_id":"p"}"#)),
            Error::MissingField("data.room_id")
        );
        assert_eq!(
            err(&with_data(
                "peer.leave.success",
                r#"{"room_id":"r","session_id":"s"}"#
            )),
            Error::MissingField("data.peer_id")
        );
        assert_eq!(
            err(&with_data(
                "role.change.success",
                r#"{"room_id":"r","session_id":"s","peer_id":"p"}"#
            )),
            Error::MissingField("data.role")
        );
        assert_eq!(
            err(&with_data(
                "peer.join.success",
                r#"{"room_id":["r"],"peer_id":"p"}"#
            )),
            Error::InvalidField {
                field: "data.room_id",
                expected: "a string"
            }
        );
        // Session events need no peer.
        let body = with_data(
            "session.open.success",
            r#"{"room_id":"r","session_id":"s"}"#,
        );
        let e = handled(body.as_bytes());
        assert_eq!(e.session_id, "s");
        assert_eq!(e.peer, None);
    }

    #[test]
    fn every_handled_envelope_type_needs_its_session() {
        for event_type in [
            "session.open.success",
            "session.close.success",
            "room.end.success",
            "peer.join.success",
            "peer.leave.success",
            "role.change.success",
            "track.add.success",
            "peer.joined",
            "room.ended",
        ] {
            let missing = with_data(event_type, r#"{"room_id":"r","peer_id":"p","role":"x"}"#);
            assert_eq!(
                err(&missing),
                Error::MissingField("data.session_id"),
                "{event_type}"
            );
            let empty = with_data(
                event_type,
                r#"{"room_id":"r","session_id":"","peer_id":"p","role":"x"}"#,
            );
            assert_eq!(err(&empty).code(), "invalid_field", "{event_type}");
        }
        // Failure events have none (100ms documents none for the peer ones): still fine.
        let failure = with_data("peer.join.failure", r#"{"room_id":"r"}"#);
        assert_eq!(
            ignored(failure.as_bytes()).reason,
            IgnoreReason::FailureEvent
        );
    }

    #[test]
    fn data_times_are_bounded_by_the_envelope_timestamp() {
        // Envelope 2024-10-04T18:03:10Z: a day before and two minutes after are the bounds.
        for (field, key) in [
            ("data.joined_at", "joined_at"),
            ("data.session_started_at", "session_started_at"),
        ] {
            for (time, ok) in [
                ("2024-10-03T18:03:10Z", true),
                ("2024-10-03T18:03:09.999999Z", false),
                ("2024-10-04T18:05:10Z", true),
                ("2024-10-04T18:05:10.000001Z", false),
                ("9999-12-31T23:59:59Z", false),
                ("1970-01-01T00:00:00Z", false),
            ] {
                let body = with_data(
                    "peer.join.success",
                    &format!(
                        r#"{{"room_id":"r","session_id":"s","peer_id":"p","{key}":"{time}"}}"#
                    ),
                );
                match parse(body.as_bytes()) {
                    Ok(_) => assert!(ok, "{key} {time} accepted"),
                    Err(Error::InvalidTimestamp { field: f, reason }) => {
                        assert!(!ok, "{key} {time} refused");
                        assert_eq!(f, field);
                        assert!(reason.contains("envelope timestamp"), "{reason}");
                    }
                    Err(other) => panic!("{key} {time}: {other:?}"),
                }
            }
        }
        for (event_type, key) in [
            ("peer.leave.success", "left_at"),
            ("role.change.success", "role_changed_at"),
            ("session.close.success", "session_stopped_at"),
        ] {
            let body = with_data(
                event_type,
                &format!(
                    r#"{{"room_id":"r","session_id":"s","peer_id":"p","role":"x","{key}":"2024-10-05T18:03:10Z"}}"#
                ),
            );
            assert!(
                matches!(err(&body), Error::InvalidTimestamp { field, .. } if field.ends_with(key)),
                "{event_type}"
            );
        }
    }

    #[test]
    fn a_whole_second_envelope_timestamp_stands_for_the_end_of_its_second() {
        let whole = handled(JOIN.as_bytes());
        assert_eq!(whole.stand_in_time, ts("2024-10-04T18:03:10.999999Z"));
        assert_eq!(whole.head.timestamp, ts("2024-10-04T18:03:10Z"));
        let fraction = JOIN.replace("18:03:10Z\"", "18:03:10.000Z\"");
        let e = handled(fraction.as_bytes());
        assert_eq!(e.stand_in_time, ts("2024-10-04T18:03:10Z"));
        let flat =
            br#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":1728064990000}"#;
        let e = handled(flat);
        assert_eq!(
            e.stand_in_time, e.head.timestamp,
            "flat timestamps are milliseconds"
        );
    }

    #[test]
    fn unknown_and_failure_types_only_need_a_valid_envelope() {
        let body = with_data("recording.success", r#"{"size":"12","room_id":5}"#);
        let e = ignored(body.as_bytes());
        assert_eq!(e.reason, IgnoreReason::EventTypeNotHandled);
        assert_eq!(e.room_id, None);
        let body = with_data(
            "peer.join.failure",
            r#"{"room_id":"r","joined_at":"0001-01-01T00:00:00Z"}"#,
        );
        let e = ignored(body.as_bytes());
        assert_eq!(e.reason, IgnoreReason::FailureEvent);
        assert_eq!(e.room_id.as_deref(), Some("r"));
    }

    #[test]
    fn nul_characters_are_refused_in_every_passed_on_string() {
        for field in ["room_id", "peer_id", "session_id", "role"] {
            let mut data =
                serde_json::json!({"room_id":"r","peer_id":"p","session_id":"s","role":"host"});
            data[field] = serde_json::Value::String("a\u{0}b".into());
            let body = with_data("peer.join.success", &data.to_string());
            assert!(
                matches!(err(&body), Error::InvalidField { expected, .. } if expected.contains("NUL")),
                "{field}"
            );
        }
        let body = r#"{"id":"e\u0000","type":"t","timestamp":"2024-10-04T18:03:10Z","data":{}}"#;
        assert_eq!(err(body).code(), "invalid_field");
        let body =
            r#"{"id":"e","type":"peer.joined\u0000","timestamp":"2024-10-04T18:03:10Z","data":{}}"#;
        assert_eq!(err(body).code(), "invalid_field");
    }

    #[test]
    fn long_fields_are_refused() {
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let ok = "x".repeat(MAX_FIELD_BYTES);
        for field in ["room_id", "peer_id", "session_id", "role"] {
            let mut data =
                serde_json::json!({"room_id":"r","peer_id":"p","session_id":"s","role":"host"});
            data[field] = serde_json::Value::String(long.clone());
            let body = with_data("peer.join.success", &data.to_string());
            assert!(
                matches!(err(&body), Error::FieldTooLong { max: 256, .. }),
                "{field}"
            );
            data[field] = serde_json::Value::String(ok.clone());
            assert!(parse(with_data("peer.join.success", &data.to_string()).as_bytes()).is_ok());
        }
        let body = format!(
            r#"{{"id":"{long}","type":"t","timestamp":"2024-10-04T18:03:10Z","data":{{}}}}"#
        );
        assert_eq!(
            err(&body),
            Error::FieldTooLong {
                field: "id",
                max: 256
            }
        );
        // 256 bytes, not characters: 129 two-byte characters are too long.
        let wide = "é".repeat(129);
        let body = with_data(
            "peer.join.success",
            &format!(r#"{{"room_id":"{wide}","peer_id":"p"}}"#),
        );
        assert!(matches!(err(&body), Error::FieldTooLong { .. }));
    }

    #[test]
    fn data_times_by_action() {
        let leave = with_data(
            "peer.leave.success",
            r#"{"room_id":"r","session_id":"s","peer_id":"p","left_at":"2024-10-04T18:04:31.904117326Z","joined_at":"2024-10-04T18:03:10Z","role_changed_at":"garbage"}"#,
        );
        let e = handled(leave.as_bytes());
        assert_eq!(e.times.left_at, Some(ts("2024-10-04T18:04:31.904117Z")));
        assert_eq!(e.times.joined_at, Some(ts("2024-10-04T18:03:10Z")));
        assert_eq!(
            e.times.role_changed_at, None,
            "irrelevant fields are ignored"
        );
        let bad = with_data(
            "peer.join.success",
            r#"{"room_id":"r","session_id":"s","peer_id":"p","joined_at":"2024-02-30T00:00:00Z"}"#,
        );
        assert!(matches!(
            err(&bad),
            Error::InvalidTimestamp {
                field: "data.joined_at",
                ..
            }
        ));
        let zero = with_data(
            "peer.leave.success",
            r#"{"room_id":"r","session_id":"s","peer_id":"p","left_at":"0001-01-01T00:00:00Z"}"#,
        );
        assert_eq!(handled(zero.as_bytes()).times.left_at, None);
        let null = with_data(
            "peer.join.success",
            r#"{"room_id":"r","session_id":"s","peer_id":"p","joined_at":null}"#,
        );
        assert_eq!(handled(null.as_bytes()).times.joined_at, None);
    }

    #[test]
    fn flat_format() {
        let body = r#"{"event":"peer.joined","room_id":"room-1","peer":{"id":"p1","role":"Speaker"},"timestamp":1728064990558}"#;
        let e = handled(body.as_bytes());
        assert_eq!(e.head.format, Format::Flat);
        assert_eq!(e.action, Action::PeerJoin);
        assert_eq!(
            e.head.id,
            format!("sha256:{}", hex::encode(Sha256::digest(body.as_bytes())))
        );
        assert_eq!(e.head.timestamp.to_rfc3339(), "2024-10-04T18:03:10.558000Z");
        assert_eq!(e.room_id, "room-1");
        assert_eq!(e.session_id, "");
        assert_eq!(peer_id(&e), Some("p1"));
        assert_eq!(role(&e), Some("Speaker"));
    }

    #[test]
    fn flat_format_errors() {
        let cases = [
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"}}"#,
                "missing_field",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":-5}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":1.5}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":1e300}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":99999999999999999}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":1e400}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":-1e400}"#,
                "invalid_timestamp",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":"1728064990558"}"#,
                "invalid_field",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","timestamp":1}"#,
                "missing_field",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":"p","timestamp":1}"#,
                "invalid_field",
            ),
            (
                r#"{"event":"peer.joined","room_id":"r","peer":{"role":"x"},"timestamp":1}"#,
                "missing_field",
            ),
            (
                r#"{"event":"peer.joined","peer":{"id":"p"},"timestamp":1}"#,
                "missing_field",
            ),
            (
                r#"{"event":1,"room_id":"r","timestamp":1}"#,
                "invalid_field",
            ),
        ];
        for (body, code) in cases {
            assert_eq!(err(body).code(), code, "{body}");
        }
        let e = handled(br#"{"event":"room.ended","room_id":"r","timestamp":0}"#);
        assert_eq!(e.action, Action::SessionClose);
        let e = ignored(br#"{"event":"something.else","timestamp":5}"#);
        assert_eq!(e.reason, IgnoreReason::EventTypeNotHandled);
    }

    #[test]
    fn numbers_beyond_a_double_are_refused_by_the_rule_that_reads_them() {
        let flat = br#"{"event":"peer.joined","room_id":"r","peer":{"id":"p"},"timestamp":1e400}"#;
        assert!(matches!(
            parse(flat).unwrap_err(),
            Error::InvalidTimestamp {
                field: "timestamp",
                ..
            }
        ));
        let join = with_data(
            "peer.join.success",
            r#"{"room_id":1e400,"session_id":"s","peer_id":"p"}"#,
        );
        assert_eq!(
            err(&join),
            Error::InvalidField {
                field: "data.room_id",
                expected: "a string"
            }
        );
        // Where no rule reads them, they are ignored like any other value.
        let unread = with_data(
            "peer.join.success",
            r#"{"room_id":"r","session_id":"s","peer_id":"p","size":-1e400,"left_at":1e999}"#,
        );
        assert_eq!(handled(unread.as_bytes()).room_id, "r");
        let recording = with_data("recording.success", r#"{"room_id":1e400}"#);
        assert_eq!(ignored(recording.as_bytes()).room_id, None);
        // The same for the objects read inside a body (`data`, the flat format's `peer`).
        assert_eq!(
            err(&with_data("peer.join.success", "-1e400")),
            Error::InvalidField {
                field: "data",
                expected: "an object"
            }
        );
        let flat = br#"{"event":"peer.joined","room_id":"r","timestamp":1,"peer":1e400}"#;
        assert_eq!(
            parse(flat).unwrap_err(),
            Error::InvalidField {
                field: "peer",
                expected: "an object"
            }
        );
        let unread =
            br#"{"event":"room.started","room_id":"r","timestamp":1,"peer":1e400,"data":"\ud800"}"#;
        assert_eq!(handled(unread).room_id, "r");
        let unread = format!(
            r#"{{"peer":1e400,{}"#,
            with_data(
                "peer.join.success",
                r#"{"room_id":"r","session_id":"s","peer_id":"p"}"#
            )
            .trim_start_matches('{')
        );
        assert_eq!(handled(unread.as_bytes()).room_id, "r");
    }

    #[test]
    fn nesting_is_bounded_and_refused_cleanly() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let within = format!(
            r#"{{"id":"x","type":"t","timestamp":"2024-10-04T18:03:10Z","data":{{"x":{}}}}}"#,
            deep(document::MAX_DEPTH - 2)
        );
        assert_eq!(
            ignored(within.as_bytes()).reason,
            IgnoreReason::EventTypeNotHandled
        );
        for n in [document::MAX_DEPTH, 100_000] {
            let beyond = format!(
                r#"{{"id":"x","type":"t","timestamp":"2024-10-04T18:03:10Z","data":{{"x":{}}}}}"#,
                deep(n)
            );
            assert!(matches!(err(&beyond), Error::InvalidJson(m) if m.contains("recursion limit")));
        }
        let known = with_data(
            "peer.join.success",
            &format!(r#"{{"room_id":{},"peer_id":"p"}}"#, deep(10)),
        );
        assert_eq!(
            err(&known),
            Error::InvalidField {
                field: "data.room_id",
                expected: "a string"
            }
        );
        let unbalanced = format!("{{\"x\":{}", "[".repeat(100_000));
        assert!(matches!(err(&unbalanced), Error::InvalidJson(_)));
    }
}
