//! The I/O seam of reconcile: one HTTP exchange as data, the [`Http`] trait the boundary
//! implements with `fetch` (and tests with a fake), and a small join for bounded concurrency.
//! A pass is an ordinary `async fn` generic over [`Http`], so the core stays sans-IO.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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

/// Polls every future until all are ready; outputs in input order. Enough for a handful of
/// workers in one thread: a wake-up re-polls all of them.
pub fn join_all<F: Future>(futures: Vec<F>) -> JoinAll<F> {
    JoinAll {
        slots: futures
            .into_iter()
            .map(|f| (Some(Box::pin(f)), None))
            .collect(),
    }
}

/// The future of [`join_all`].
pub struct JoinAll<F: Future> {
    #[allow(clippy::type_complexity)]
    slots: Vec<(Option<Pin<Box<F>>>, Option<F::Output>)>,
}

// The futures are boxed and outputs are only moved out, never pinned: no field is structurally
// pinned, so the join itself may move.
impl<F: Future> Unpin for JoinAll<F> {}

impl<F: Future> Future for JoinAll<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut pending = false;
        for (future, output) in &mut this.slots {
            if let Some(f) = future {
                match f.as_mut().poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *future = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            return Poll::Pending;
        }
        Poll::Ready(
            this.slots
                .iter_mut()
                .filter_map(|(_, output)| output.take())
                .collect(),
        )
    }
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
    use std::cell::Cell;

    /// Pending once, then ready: exercises the re-poll path.
    struct YieldOnce(Cell<bool>, u32);
    impl Future for YieldOnce {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.0.replace(true) {
                Poll::Ready(self.1)
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    #[test]
    fn join_all_keeps_input_order() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut join = join_all(vec![
            YieldOnce(Cell::new(false), 1),
            YieldOnce(Cell::new(true), 2),
        ]);
        assert!(Pin::new(&mut join).poll(&mut cx).is_pending());
        assert_eq!(Pin::new(&mut join).poll(&mut cx), Poll::Ready(vec![1, 2]));
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(encode_component("a b/c?d&é"), "a%20b%2Fc%3Fd%26%C3%A9");
    }
}
