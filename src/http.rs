//! The one HTTP model of both routes: one exchange as data ([`Request`], [`Outcome`]) and the
//! [`Http`] trait the boundary implements with `fetch` (and tests with a fake). The webhook hands
//! its one RPC back as a `Request`; a pass is an ordinary `async fn` generic over [`Http`]. So
//! the core stays sans-IO.

use std::future::Future;

/// The two methods reconcile uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET, no body.
    Get,
    /// POST with a JSON body.
    Post,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// An HTTP request for the boundary to send. Headers carry credentials: never log them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// Full URL.
    pub url: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// JSON body (POST only).
    pub body: Option<String>,
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response (any status) with its whole body.
    Response {
        /// HTTP status.
        status: u16,
        /// Raw body.
        body: Vec<u8>,
    },
    /// No answer within the boundary's timeout.
    TimedOut,
    /// DNS, connection or TLS failure.
    Unreachable,
}

/// What a pass needs from the outside world.
pub trait Http {
    /// Sends one request; never fails otherwise than through the [`Outcome`].
    fn send(&self, request: Request) -> impl Future<Output = Outcome>;
    /// Unix milliseconds now.
    fn now_ms(&self) -> i64;
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(encode_component("a b/c?d&é"), "a%20b%2Fc%3Fd%26%C3%A9");
    }
}
