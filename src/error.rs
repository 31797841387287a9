//! The one error type of the request core: each variant maps to an HTTP status and a stable code.

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
    /// HTTP status of the reply.
    pub fn status(&self) -> u16 {
        match self {
            Error::EmptyBody
            | Error::InvalidUtf8
            | Error::InvalidJson(_)
            | Error::NotAnObject
            | Error::MissingField(_)
            | Error::InvalidField { .. }
            | Error::InvalidTimestamp { .. }
            | Error::FieldTooLong { .. } => 400,
            Error::MissingCredentials
            | Error::InvalidCredentials
            | Error::StaleTimestamp { .. } => 401,
            Error::MethodNotAllowed => 405,
            Error::PayloadTooLarge { .. } => 413,
            Error::Misconfigured { .. } | Error::Internal => 500,
            Error::UpstreamUnavailable => 503,
        }
    }

    /// Stable machine-readable code (design §4).
    pub fn code(&self) -> &'static str {
        match self {
            Error::EmptyBody => "empty_body",
            Error::InvalidUtf8 => "invalid_utf8",
            Error::InvalidJson(_) => "invalid_json",
            Error::NotAnObject => "not_an_object",
            Error::MissingField(_) => "missing_field",
            Error::InvalidField { .. } => "invalid_field",
            Error::InvalidTimestamp { .. } => "invalid_timestamp",
            Error::FieldTooLong { .. } => "field_too_long",
            Error::MissingCredentials | Error::InvalidCredentials => "unauthorized",
            Error::StaleTimestamp { .. } => "stale_timestamp",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Misconfigured { .. } => "misconfigured",
            Error::UpstreamUnavailable => "upstream_unavailable",
            Error::Internal => "internal",
        }
    }

    /// Human-readable message for the response body.
    pub fn message(&self) -> String {
        match self {
            Error::EmptyBody => "request body is empty".into(),
            Error::InvalidUtf8 => "request body is not valid UTF-8".into(),
            Error::InvalidJson(detail) => format!("request body is not valid JSON: {detail}"),
            Error::NotAnObject => "request body must be a JSON object".into(),
            Error::MissingField(field) => format!("missing required field `{field}`"),
            Error::InvalidField { field, expected } => {
                format!("field `{field}` must be {expected}")
            }
            Error::InvalidTimestamp { field, reason } => {
                format!("field `{field}` is not a valid timestamp: {reason}")
            }
            Error::FieldTooLong { field, max } => {
                format!("field `{field}` is longer than {max} bytes")
            }
            Error::MissingCredentials => "missing webhook credentials".into(),
            Error::InvalidCredentials => "invalid webhook credentials".into(),
            Error::StaleTimestamp { future: false } => {
                "event timestamp is older than the accepted tolerance".into()
            }
            Error::StaleTimestamp { future: true } => {
                "event timestamp is too far in the future".into()
            }
            Error::MethodNotAllowed => "only POST is accepted".into(),
            Error::PayloadTooLarge { limit } => {
                format!("request body is larger than {limit} bytes")
            }
            Error::Misconfigured { variable } => {
                format!("the function is not configured: check {variable}")
            }
            Error::UpstreamUnavailable => "the database API is unavailable; retry later".into(),
            Error::Internal => "internal error".into(),
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
            assert_eq!(err.status(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert!(!err.message().is_empty());
        }
    }

    #[test]
    fn messages_name_the_field_or_variable() {
        assert!(Error::MissingField("data.room_id")
            .message()
            .contains("data.room_id"));
        assert!(Error::Misconfigured {
            variable: "HMS_WEBHOOK_SECRET"
        }
        .message()
        .contains("HMS_WEBHOOK_SECRET"));
        // 401 messages only distinguish missing from invalid.
        assert_ne!(
            Error::MissingCredentials.message(),
            Error::InvalidCredentials.message()
        );
    }
}
