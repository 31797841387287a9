//! Microseconds since the Unix epoch -> RFC 3339 text (UTC, 6 fraction digits), for SQL literals
//! and for printing histories a human can read: the product's own formatter, so the tests write
//! instants exactly as the function sends them.

use super::model::Micros;
use hms_webhook::Timestamp;

/// `2024-10-04T18:03:10.558102Z` for the given instant.
pub fn rfc3339(t: Micros) -> String {
    Timestamp::from_micros(t).to_rfc3339()
}
