//! What every reader and writer shares: [`read`] runs serde_json over a whole document and, when it
//! refuses one, names where (`serde_path_to_error`), also without the document's values
//! ([`ReadError::shape`]); [`write`] writes a record; and serde types
//! for documents whose fields are checked by rules rather than by type alone ([`Field`],
//! [`Nested`], [`Members`]) or whose members keep their order ([`Entries`]).
//!
//! Most readers derive `Deserialize` for the fields they read, so serde ignores every other field
//! and refuses a key repeated among those (its `duplicate field` error): two parsers could
//! disagree about which occurrence counts. A webhook body's rules know which keys they read only
//! once they know its format and type, so it is read as [`Members`] (each member's raw text,
//! repeated keys kept) and a rule refuses a repeated key when it reads it ([`Members::get`]).
//! Nesting is bounded: serde_json refuses values it reads nested deeper than its recursion
//! limit, but skips unread ones without any limit, so [`check_depth`] (hand-written: serde_json
//! has no option for it) refuses a document nested deeper than [`MAX_DEPTH`] anywhere, as
//! before; it costs one byte count for any document with fewer brackets than that.

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// Why a document could not be read, said for two readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    /// serde_json's message, with the path of the value it was reading when that is not the top
    /// (`data.room_id: duplicate field ...`). It may quote the document (`invalid type: string
    /// "x"`), so it is only for the document's own sender.
    pub message: String,
    /// The same path and only what was expected there (`data[0].active: expected a boolean`),
    /// at most [`MAX_SHAPE_CHARS`] characters: no value of the document, only the keys that lead
    /// to it. For reporting a document someone else sent (100ms's answers).
    pub shape: String,
}

impl ReadError {
    /// A refusal whose text is the reader's own, so it may go to anyone.
    fn fixed(text: &str) -> ReadError {
        ReadError {
            message: text.to_owned(),
            shape: bounded(text.to_owned()),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Longest [`ReadError::shape`]: a path through long keys is cut, not the answer it goes in.
pub const MAX_SHAPE_CHARS: usize = 200;

fn bounded(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_SHAPE_CHARS - 1) {
        text.truncate(at);
        text.push('…');
    }
    text
}

/// What serde_json expected where it refused, without what it found: a syntax error's text is
/// serde_json's own; a type error keeps only its `expected …` (what it found, quoted before
/// that, may be a value); a missing or repeated field is one the reader names.
fn expectation(err: &serde_json::Error) -> String {
    let message = err.to_string();
    // The position comes last; a quoted value can only come before it.
    let text = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(text, _)| text);
    match err.classify() {
        Category::Syntax | Category::Eof => format!("not JSON ({text})"),
        Category::Data => match text.rsplit_once(", expected ") {
            Some((_, expected)) => format!("expected {expected}"),
            None if text.starts_with("missing field `")
                || text.starts_with("duplicate field `") =>
            {
                text.to_owned()
            }
            None => "not the expected shape".to_owned(),
        },
        Category::Io => "unreadable".to_owned(),
    }
}

/// Deepest accepted nesting of arrays and objects: 127, what serde_json accepts where it reads.
pub const MAX_DEPTH: usize = 127;

/// Refuses a document nested deeper than [`MAX_DEPTH`] anywhere (brackets inside strings do not
/// count). Malformed text passes; serde_json refuses it next with a better message.
fn check_depth(text: &str) -> Result<(), ReadError> {
    let bytes = text.as_bytes();
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_DEPTH {
        return Ok(());
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' if depth == MAX_DEPTH => {
                return Err(ReadError::fixed(&format!(
                    "recursion limit exceeded (more than {MAX_DEPTH} nested arrays or objects)"
                )))
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Reads one whole JSON document (surrounding whitespace allowed, nothing after it).
pub fn read<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ReadError> {
    check_depth(text)?;
    // Tracking the path copies every key: 138 k instead of 127 k instructions per webhook
    // (callgrind, bench/core.rs). So only a refused document is read again to say where.
    serde_json::from_str(text).map_err(|_| refusal::<T>(text))
}

/// Why serde refuses `text` as `T`, with the path of the value it was reading.
fn refusal<'a, T: Deserialize<'a>>(text: &'a str) -> ReadError {
    let mut json = serde_json::Deserializer::from_str(text);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut json) {
        Ok(_) => match json.end() {
            // serde is deterministic: the second read fails like the first. Should it not, the
            // document is still refused.
            Ok(()) => return ReadError::fixed("unreadable document"),
            Err(err) => {
                return ReadError {
                    message: err.to_string(),
                    shape: bounded(expectation(&err)),
                }
            }
        },
        Err(err) => err,
    };
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = if path == "." {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    };
    // A last segment serde_path_to_error could not name (`?`: between members) adds nothing.
    let shape = match path.trim_end_matches('?').trim_end_matches('.') {
        "" => expectation(&inner),
        named => format!("{named}: {}", expectation(&inner)),
    };
    ReadError {
        message,
        shape: bounded(shape),
    }
}

/// [`read`] over bytes that must be UTF-8; `None` for anything unreadable (answers from the
/// database and 100ms, where the only question is whether the answer has the documented shape).
pub fn read_bytes<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    read(std::str::from_utf8(body).ok()?).ok()
}

/// Writes a record as compact JSON. serde_json fails only on a map with non-string keys or a
/// `Serialize` impl that reports an error; no record the core writes has either, so the empty
/// fallback is never taken (and would show as an unreadable answer, not as a panic).
pub fn write<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// One JSON value as a rule needs it: strings (borrowed from the document unless escaped),
/// numbers and booleans by value, arrays and objects by kind only (their contents are skipped).
/// `null` never reaches it in an `Option<Field>`: serde reads it as `None`, i.e. absent.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// `null` (only where a `Field` is not wrapped in `Option`).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A non-negative integer that fits in `u64`.
    Unsigned(u64),
    /// A negative integer that fits in `i64`.
    Negative(i64),
    /// Any other number (fraction, exponent, or beyond the integer ranges).
    Float(f64),
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// An array.
    Array,
    /// An object.
    Object,
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Field<'a>, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Field<'a>, E> {
        Ok(Field::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Field<'a>, D::Error> {
        Field::deserialize(deserializer)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field<'a>, E> {
        Ok(Field::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field<'a>, E> {
        Ok(Field::Unsigned(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field<'a>, E> {
        Ok(u64::try_from(v).map_or(Field::Negative(v), Field::Unsigned))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'a>, E> {
        Ok(Field::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'a>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'a>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'a>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'a>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'a>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }
}

impl<'a> Field<'a> {
    /// A [`Member::Raw`] value, read as a rule needs it. serde_json reads a number
    /// only now, and refuses one beyond a double's range (`1e400`): that one is `Float(±∞)`, so
    /// the rule reading it refuses it by name like any number it cannot use. Fails only for a
    /// string that cannot be decoded (a lone surrogate in a `\u` escape: serde_json checks
    /// escapes only when it reads a string, not when it skips one).
    pub fn from_raw(raw: &'a RawValue) -> Result<Field<'a>, ReadError> {
        let text = raw.get();
        // Most values a rule reads are strings without escapes: serde_json has checked them (no
        // control characters), so the text between the quotes is the string.
        if let Some(plain) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            if !plain.contains('\\') {
                return Ok(Field::Str(Cow::Borrowed(plain)));
            }
        }
        serde_json::from_str(text).or_else(|err| match text.as_bytes().first() {
            Some(b'-') => Ok(Field::Float(f64::NEG_INFINITY)),
            Some(b'0'..=b'9') => Ok(Field::Float(f64::INFINITY)),
            // The position serde_json gives is within the value, not the document: leave it out.
            _ => {
                let message = err.to_string();
                let what = message.split(" at line ").next().unwrap_or_default();
                Err(ReadError::fixed(what))
            }
        })
    }
}

/// An object's members in document order, repeated keys kept: for a document whose rules decide
/// which keys they read only after reading some (a webhook's type decides which of `data`'s keys
/// count). [`Members::get`] refuses a key that occurs more than once, so a repeated key is
/// refused exactly where a rule reads it and nowhere else.
#[derive(Debug, Clone)]
pub struct Members<'a>(Vec<(Cow<'a, str>, Member<'a>)>);

/// One member's value.
#[derive(Debug, Clone)]
pub enum Member<'a> {
    /// Its JSON text, read as a rule needs it by [`Field::from_raw`] or [`Members::of`].
    Raw(&'a RawValue),
    /// A member [`read_members`] was told may hold an object, when it holds another kind.
    Value(Field<'a>),
    /// A member [`read_members`] was told may hold an object, when it does: read in the same
    /// pass (reading its text again would scan most of a webhook body twice).
    Object(Members<'a>),
}

/// [`Members::get`]: the key occurs more than once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

impl<'a> Members<'a> {
    /// Member `key` (compared unescaped), `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<&Member<'a>>, Repeated> {
        let mut found = None;
        for (name, value) in &self.0 {
            if name == key {
                if found.is_some() {
                    return Err(Repeated);
                }
                found = Some(value);
            }
        }
        Ok(found)
    }

    /// The members of a [`Member::Raw`] object, or `None` when it is another kind of value. Its
    /// text was read (and its depth checked) with the document's.
    pub fn of(raw: &'a RawValue) -> Option<Members<'a>> {
        if raw.get().starts_with('{') {
            // serde_json has already read this text as an object: reading it again cannot fail.
            let mut json = serde_json::Deserializer::from_str(raw.get());
            MembersSeed { objects: &[] }.deserialize(&mut json).ok()
        } else {
            None
        }
    }
}

/// Reads an object as [`Members`]; the members named in `objects` are read as [`Member::Object`]
/// or [`Member::Value`], every other one as [`Member::Raw`].
#[derive(Clone, Copy)]
struct MembersSeed {
    objects: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for MembersSeed {
    type Value = Members<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Members<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MembersSeed {
    type Value = Members<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
        // A webhook's top level has ~6 members and its `data` ~12: one allocation for either.
        let mut members = Vec::with_capacity(16);
        // A JSON key is always a string: `Field` reads it, borrowed unless escaped.
        while let Some(key) = map.next_key::<Field<'de>>()? {
            let Field::Str(key) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = if self.objects.contains(&&*key) {
                map.next_value_seed(MemberSeed)?
            } else {
                Member::Raw(map.next_value()?)
            };
            members.push((key, value));
        }
        Ok(Members(members))
    }
}

/// A member that may hold an object: [`Member::Object`] (its members all raw) or
/// [`Member::Value`].
struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Member<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MemberSeed {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Member<'de>, A::Error> {
        MembersSeed { objects: &[] }
            .visit_map(map)
            .map(Member::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Member<'de>, A::Error> {
        FieldVisitor(PhantomData).visit_seq(seq).map(Member::Value)
    }
    fn visit_unit<E>(self) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Bool(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Unsigned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Member<'de>, E> {
        Ok(Member::Value(
            u64::try_from(v).map_or(Field::Negative(v), Field::Unsigned),
        ))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Float(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::Value(Field::Str(Cow::Owned(v.to_owned()))))
    }
}

/// Reads one whole JSON document that should be an object: its [`Members`], or `None` when it is
/// JSON of another kind. The members named in `objects` are read in the same pass when they hold
/// objects ([`Member`]).
pub fn read_members<'a>(
    text: &'a str,
    objects: &'static [&'static str],
) -> Result<Option<Members<'a>>, ReadError> {
    // JSON whitespace (RFC 8259 §2) is a subset of what `trim_start` removes; anything else
    // before the `{` is refused by the read.
    if !text.trim_start().starts_with('{') {
        return read::<IgnoredAny>(text).map(|_| None);
    }
    check_depth(text)?;
    let mut json = serde_json::Deserializer::from_str(text);
    let first = MembersSeed { objects }
        .deserialize(&mut json)
        .and_then(|members| json.end().map(|()| members));
    match first {
        Ok(members) => Ok(Some(members)),
        // Reading a member in `objects` that is not an object reads its value, which serde_json
        // can refuse where no rule may read it (a number beyond a double, a lone surrogate):
        // read every member raw instead, and let a syntax error be refused with its path.
        Err(_) => read::<Members>(text).map(Some),
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        MembersSeed { objects: &[] }.deserialize(deserializer)
    }
}

/// An object read as its members in document order, for the lists 100ms keys by id (where a
/// map type would sort them, and drop a repeated key without saying so).
#[derive(Debug, Clone, PartialEq)]
pub struct Entries<T>(pub Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for EntriesVisitor<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<T>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// A value that should be the object `T`: `Object(T)` when it is one (then `T`'s own rules
/// apply), `Other` when it is any other kind, so the rule reading it can say what it expected.
/// (A derived struct alone would also accept an array, positionally, and refuse other kinds
/// with serde's type message rather than the field's.)
#[derive(Debug, Clone, PartialEq)]
pub enum Nested<T> {
    /// It was an object.
    Object(T),
    /// It was something else (not `null`: an `Option<Nested<T>>` reads that as `None`).
    Other,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nested<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NestedVisitor(PhantomData))
    }
}

struct NestedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for NestedVisitor<T> {
    type Value = Nested<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Nested<T>, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Nested::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Nested<T>, A::Error> {
        FieldVisitor(PhantomData)
            .visit_seq(seq)
            .map(|_| Nested::Other)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Nested<T>, D::Error> {
        Nested::deserialize(deserializer)
    }
    fn visit_unit<E>(self) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_none<E>(self) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Nested<T>, E> {
        Ok(Nested::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Doc<'a> {
        #[serde(borrow)]
        a: Option<Field<'a>>,
        #[serde(borrow)]
        inner: Option<Nested<Inner<'a>>>,
    }

    #[derive(Debug, Deserialize)]
    struct Inner<'a> {
        #[serde(borrow)]
        b: Option<Field<'a>>,
    }

    #[test]
    fn fields_keep_their_kind_and_borrow_plain_strings() {
        let doc: Doc = read(r#"{"a":"x","inner":{"b":[1,{"c":2}]},"zz":{"deep":[[[]]]}}"#).unwrap();
        assert!(matches!(doc.a, Some(Field::Str(Cow::Borrowed("x")))));
        let Some(Nested::Object(inner)) = doc.inner else {
            panic!("an object")
        };
        assert_eq!(inner.b, Some(Field::Array));
        let escaped: Doc = read(r#"{"a":"\u0041"}"#).unwrap();
        assert!(matches!(escaped.a, Some(Field::Str(Cow::Owned(s))) if s == "A"));
        for (text, field) in [
            ("-5", Field::Negative(-5)),
            ("5", Field::Unsigned(5)),
            ("1.5", Field::Float(1.5)),
            ("true", Field::Bool(true)),
            ("{}", Field::Object),
        ] {
            let text = format!(r#"{{"a":{text}}}"#);
            let doc: Doc = read(&text).unwrap();
            assert_eq!(doc.a, Some(field), "{text}");
        }
        let null: Doc = read(r#"{"a":null,"inner":null}"#).unwrap();
        assert!(null.a.is_none() && null.inner.is_none());
        let other: Doc = read(r#"{"inner":[1]}"#).unwrap();
        assert_eq!(other.inner.map(|n| matches!(n, Nested::Other)), Some(true));
    }

    #[test]
    fn repeated_read_keys_are_refused_with_their_path() {
        let err = read::<Doc>(r#"{"inner":{"b":1,"b":2}}"#).unwrap_err();
        assert!(err.message.contains("duplicate field `b`"), "{err}");
        assert!(err.message.starts_with("inner"), "{err}");
        // Keys nobody reads may repeat.
        assert!(read::<Doc>(r#"{"z":1,"z":2}"#).is_ok());
    }

    #[test]
    fn the_shape_of_a_refusal_keeps_the_path_and_drops_the_value() {
        #[derive(Debug, Deserialize)]
        struct Typed {
            #[serde(rename = "n")]
            _n: Vec<u64>,
        }
        let err = read::<Typed>(r#"{"n":[1,"secret, expected x"]}"#).unwrap_err();
        assert!(err.message.contains("secret"), "{err}");
        assert_eq!(err.shape, "n[1]: expected u64");
        assert_eq!(read::<Typed>("{}").unwrap_err().shape, "missing field `n`");
        assert_eq!(
            read::<Typed>(r#"{"n":[]} x"#).unwrap_err().shape,
            "not JSON (trailing characters)"
        );
    }

    #[test]
    fn syntax_errors_and_trailing_text_are_refused() {
        assert!(read::<Doc>("{").is_err());
        assert!(read::<Doc>("{} x").is_err());
        assert!(read::<Doc>("{}  \n").is_ok());
        assert!(read_bytes::<Doc>(b"{\"a\":\"\xff\"}").is_none());
    }

    #[test]
    fn nesting_is_bounded_everywhere_and_strings_do_not_count() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // The object itself is one level.
        assert!(read::<Doc>(&format!(r#"{{"zz":{}}}"#, deep(MAX_DEPTH - 1))).is_ok());
        for field in ["zz", "a"] {
            for n in [MAX_DEPTH, 100_000] {
                let err = read::<Doc>(&format!(r#"{{"{field}":{}}}"#, deep(n))).unwrap_err();
                assert!(err.message.contains("recursion limit"), "{err}");
            }
        }
        let brackets = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(read::<Doc>(&brackets).is_ok());
        assert!(read::<Doc>(&format!(r#"{{"a":{}"#, "[".repeat(100_000))).is_err());
    }
}
