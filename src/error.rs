//! The one error type of the request core: each variant maps to an HTTP status and a stable code.

use crate::config::Misconfig;
use std::borrow::Cow;

/// Everything that can make a webhook request end without a successful RPC.
///
/// Messages are written for the sender (100ms dashboard, an operator with curl): they name the
/// offending field or variable but never echo secrets, header values or the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The body has zero bytes.
    EmptyBody,
    /// The body is not UTF-8.
    InvalidUtf8,
    /// The body is not JSON (or has duplicate keys / too deep nesting); the text says where.
    InvalidJson(String),
    /// The JSON document is not an object.
    NotAnObject,
    /// A required field is absent; the value is its path, e.g. `data.room_id`.
    MissingField(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    InvalidField {
        /// Path of the field, e.g. `data.peer_id`.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A timestamp field is not RFC 3339 (or not in range).
    InvalidTimestamp {
        /// Path of the field.
        field: &'static str,
        /// Why it was refused.
        reason: Cow<'static, str>,
    },
    /// A string field is longer than the limit.
    FieldTooLong {
        /// Path of the field.
        field: &'static str,
        /// Maximum length in bytes.
        max: usize,
    },
    /// No credentials were presented.
    MissingCredentials,
    /// Credentials were presented but none was valid.
    InvalidCredentials,
    /// The event timestamp is outside the accepted window.
    StaleTimestamp {
        /// True when the event is too far in the future rather than too old.
        future: bool,
    },
    /// The method is neither POST nor OPTIONS.
    MethodNotAllowed,
    /// The body is larger than `HMS_MAX_BODY_BYTES`.
    PayloadTooLarge {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// Required configuration is missing or invalid; the request is refused (fail closed).
    Misconfigured {
        /// The environment variable at fault.
        variable: &'static str,
    },
    /// The REST API could not give a usable answer; 100ms should retry.
    UpstreamUnavailable,
    /// The boundary failed in a way the core cannot describe (e.g. the body stream broke).
    Internal,
}

impl Error {
    /// The one table: HTTP status, stable code (design §4) and the message for the sender.
    pub fn describe(&self) -> (u16, &'static str, Cow<'static, str>) {
        match self {
            Error::EmptyBody => (400, "empty_body", "request body is empty".into()),
            Error::InvalidUtf8 => (
                400,
                "invalid_utf8",
                "request body is not valid UTF-8".into(),
            ),
            Error::InvalidJson(detail) => (
                400,
                "invalid_json",
                format!("request body is not valid JSON: {detail}").into(),
            ),
            Error::NotAnObject => (
                400,
                "not_an_object",
                "request body must be a JSON object".into(),
            ),
            Error::MissingField(field) => (
                400,
                "missing_field",
                format!("missing required field `{field}`").into(),
            ),
            Error::InvalidField { field, expected } => (
                400,
                "invalid_field",
                format!("field `{field}` must be {expected}").into(),
            ),
            Error::InvalidTimestamp { field, reason } => (
                400,
                "invalid_timestamp",
                format!("field `{field}` is not a valid timestamp: {reason}").into(),
            ),
            Error::FieldTooLong { field, max } => (
                400,
                "field_too_long",
                format!("field `{field}` is longer than {max} bytes").into(),
            ),
            Error::MissingCredentials => {
                (401, "unauthorized", "missing webhook credentials".into())
            }
            Error::InvalidCredentials => {
                (401, "unauthorized", "invalid webhook credentials".into())
            }
            Error::StaleTimestamp { future: false } => (
                401,
                "stale_timestamp",
                "event timestamp is older than the accepted tolerance".into(),
            ),
            Error::StaleTimestamp { future: true } => (
                401,
                "stale_timestamp",
                "event timestamp is too far in the future".into(),
            ),
            Error::MethodNotAllowed => (405, "method_not_allowed", "only POST is accepted".into()),
            Error::PayloadTooLarge { limit } => (
                413,
                "payload_too_large",
                format!("request body is larger than {limit} bytes").into(),
            ),
            Error::Misconfigured { variable } => (
                500,
                "misconfigured",
                format!("the function is not configured: check {variable}").into(),
            ),
            Error::Internal => (500, "internal", "internal error".into()),
            Error::UpstreamUnavailable => (
                503,
                "upstream_unavailable",
                "the database API is unavailable; retry later".into(),
            ),
        }
    }

    /// Stable machine-readable code (design §4).
    #[cfg(test)]
    pub fn code(&self) -> &'static str {
        self.describe().1
    }
}

impl From<std::str::Utf8Error> for Error {
    fn from(_: std::str::Utf8Error) -> Self {
        Error::InvalidUtf8
    }
}

impl From<crate::document::ReadError> for Error {
    fn from(err: crate::document::ReadError) -> Self {
        Error::InvalidJson(err.message)
    }
}

impl From<&Misconfig> for Error {
    fn from(problem: &Misconfig) -> Self {
        Error::Misconfigured {
            variable: problem.variable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_follow_the_design_table() {
        let cases: Vec<(Error, u16, &str)> = vec![
            (Error::EmptyBody, 400, "empty_body"),
            (Error::InvalidUtf8, 400, "invalid_utf8"),
            (Error::InvalidJson("x".into()), 400, "invalid_json"),
            (Error::NotAnObject, 400, "not_an_object"),
            (Error::MissingField("id"), 400, "missing_field"),
            (
                Error::InvalidField {
                    field: "id",
                    expected: "a string",
                },
                400,
                "invalid_field",
            ),
            (
                Error::InvalidTimestamp {
                    field: "timestamp",
                    reason: "bad".into(),
                },
                400,
                "invalid_timestamp",
            ),
            (
                Error::FieldTooLong {
                    field: "id",
                    max: 256,
                },
                400,
                "field_too_long",
            ),
            (Error::MissingCredentials, 401, "unauthorized"),
            (Error::InvalidCredentials, 401, "unauthorized"),
            (
                Error::StaleTimestamp { future: true },
                401,
                "stale_timestamp",
            ),
            (Error::MethodNotAllowed, 405, "method_not_allowed"),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "payload_too_large",
            ),
            (
                Error::Misconfigured {
                    variable: "SUPABASE_URL",
                },
                500,
                "misconfigured",
            ),
            (Error::UpstreamUnavailable, 503, "upstream_unavailable"),
            (Error::Internal, 500, "internal"),
        ];
        for (err, status, code) in cases {
            let (got_status, got_code, message) = err.describe();
            assert_eq!(got_status, status, "{err:?}");
            assert_eq!(got_code, code, "{err:?}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn messages_name_the_field_or_variable() {
        let message = |err: Error| err.describe().2;
        assert!(message(Error::MissingField("data.room_id")).contains("data.room_id"));
        assert!(message(Error::Misconfigured {
            variable: "HMS_WEBHOOK_SECRET"
        })
        .contains("HMS_WEBHOOK_SECRET"));
        // 401 messages only distinguish missing from invalid.
        assert_ne!(
            message(Error::MissingCredentials),
            message(Error::InvalidCredentials)
        );
    }
}
