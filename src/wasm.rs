//! The Wasm boundary (wasm32 only): turns a web `Request` into the core's `Incoming`, reads the
//! body with a cap, sends the one RPC with the global `fetch`, logs, and builds the `Response`.

use crate::config::{Config, Misconfig, VARIABLES};
use crate::error::Error;
use crate::http::{self, Http, Outcome as HttpOutcome};
use crate::reconcile;
use crate::reconcile::hms_api::Api;
use crate::reconcile::token::TokenCache;
use crate::reply::{Log, Outcome, Reply};
use crate::webhook::handler::{self, Incoming, Step};
use js_sys::{Date, Uint8Array};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortController, Headers, ReadableStreamDefaultReader, ReadableStreamReadResult, Request,
    RequestInit, Response, ResponseInit,
};

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (Deno has no `window`, so `web_sys::window()` is not an option).
    #[wasm_bindgen(js_name = fetch, catch)]
    fn fetch_with_request(input: &Request) -> Result<js_sys::Promise, JsValue>;

    /// Global timers. `AbortSignal.timeout` would keep every request's objects alive for the
    /// whole timeout even after the answer came; a cleared timer releases them at once.
    #[wasm_bindgen(js_name = setTimeout, catch)]
    fn set_timeout(callback: &js_sys::Function, ms: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsValue);

    /// Web Crypto's CSPRNG, for the management token's `jti`.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buffer: &mut [u8]) -> Result<JsValue, JsValue>;
}

/// Give up on PostgREST after this long: 100ms retries a 503, a hung request helps nobody.
const UPSTREAM_TIMEOUT_MS: u32 = 10_000;

fn now_ms() -> i64 {
    // Date.now() is an integral number of ms well inside i64.
    Date::now() as i64
}

/// One handler per isolate: configuration parsed once, then reused for every request.
#[wasm_bindgen]
pub struct WebhookHandler {
    /// A usable configuration, or the 500 `misconfigured` reply every request gets.
    config: Result<Config, Reply>,
    /// The 100ms management token, reused across requests until shortly before it expires.
    tokens: RefCell<TokenCache>,
}

#[wasm_bindgen]
impl WebhookHandler {
    /// The names of the environment variables the core reads: the shim passes exactly these.
    pub fn variables() -> Vec<String> {
        VARIABLES.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Builds the handler from a plain object of environment strings (see [`Self::variables`]).
    /// Never throws: an unusable object yields a handler that answers 500 `misconfigured`.
    #[wasm_bindgen(constructor)]
    pub fn new(env: JsValue) -> WebhookHandler {
        let config = env_pairs(env)
            .ok_or_else(|| {
                Misconfig::new(
                    "environment",
                    "the handler was not given an object of strings",
                )
            })
            .and_then(Config::from_env)
            .map_err(|problem| handler::misconfigured(&problem));
        WebhookHandler {
            config,
            tokens: RefCell::new(TokenCache::default()),
        }
    }

    /// Handles one request. Never rejects for request or upstream problems: they become JSON
    /// replies (4xx/5xx) and exactly one log line.
    pub async fn handle(&self, request: Request) -> Result<Response, JsValue> {
        let reply = match &self.config {
            Ok(config) if reconcile::is_route(&path_of(&request.url())) => {
                // Behind a vtable, so wasm-opt cannot inline the whole pass into this function:
                // V8 compiles a function whole on its first call, and every cold webhook would
                // compile the pass too (80 KB of code, +12 ms on the first request on Deno 2.1).
                let pass: Pin<Box<dyn Future<Output = Reply> + '_>> =
                    Box::pin(self.reconcile(config, &request));
                pass.await
            }
            Ok(config) => handle_request(config, &request).await,
            Err(misconfigured) => misconfigured.clone(),
        };
        web_sys::console::log_1(&JsValue::from_str(&reply.log));
        to_response(&reply)
    }
}

/// The benchmark's entry point, only in the bench build (`--features bench`, scripts/build.sh
/// --bench): the deployed module has no `check_event`.
#[cfg(feature = "bench")]
#[wasm_bindgen]
impl WebhookHandler {
    /// The contract tables as the core states them (design §3, §5), for the test that checks
    /// the TypeScript copies: `{actions: {type: p_action}, speaker_roles, ignored_roles}`.
    pub fn contract() -> Result<JsValue, JsValue> {
        #[derive(serde::Serialize)]
        struct Contract {
            actions: std::collections::BTreeMap<&'static str, &'static str>,
            speaker_roles: &'static str,
            ignored_roles: &'static str,
        }
        let contract = Contract {
            actions: crate::webhook::event::EVENT_ACTIONS
                .iter()
                .map(|(name, action)| (*name, action.as_str()))
                .collect(),
            speaker_roles: crate::roles::DEFAULT_SPEAKER_ROLES,
            ignored_roles: crate::roles::DEFAULT_IGNORED_ROLES,
        };
        to_js(&contract)
    }

    /// Runs `begin` on a POST without I/O, for benchmarking verify + parse + classify + plan
    /// inside Wasm with the boundary the request path has: the two credential header values
    /// (what `handle` fetches by name), the body bytes in, one string out. Answers
    /// `call\n<RPC body>` or `<status>\n<reply body>`; the service key is never included.
    pub fn check_event(
        &self,
        signature: Option<String>,
        secret_header: Option<String>,
        body: &[u8],
        now_ms: f64,
    ) -> String {
        let step = match &self.config {
            Ok(config) => {
                let [signature_name, secret_name] = config.settings().verifier.header_names();
                let headers: Vec<(String, String)> =
                    [(signature_name, signature), (secret_name, secret_header)]
                        .into_iter()
                        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
                        .collect();
                handler::begin(
                    config,
                    &Incoming {
                        method: "POST",
                        headers: &headers,
                        body,
                        now_ms: now_ms as i64,
                    },
                )
            }
            Err(misconfigured) => Step::Respond(misconfigured.clone()),
        };
        match step {
            Step::Respond(reply) => format!("{}\n{}", reply.status, reply.body),
            Step::Call(call) => {
                let body = call.request.body.unwrap_or_default();
                let mut out = String::with_capacity(5 + body.len());
                out.push_str("call\n");
                out.push_str(&body);
                out
            }
        }
    }
}

impl WebhookHandler {
    /// `POST …/reconcile`: admitted like a webhook, then one pass with `fetch` as its I/O.
    async fn reconcile(&self, config: &Config, request: &Request) -> Reply {
        let read = match read_request(config, request, false).await {
            Ok(read) => read,
            Err(reply) => return reply,
        };
        let received = read.now_ms;
        let settings = match reconcile::admit(config, &read.incoming()) {
            Ok(settings) => settings,
            Err(reply) => return reply,
        };
        // The borrow ends before any await: one isolate may serve requests concurrently.
        let token = settings.api.as_ref().map(|api| {
            self.tokens.borrow_mut().get(
                &api.access_key,
                &api.app_secret,
                received / 1000,
                random_16,
            )
        });
        let pass = reconcile::Pass {
            rest: &settings.rest,
            api: settings
                .api
                .as_ref()
                .zip(token.as_deref())
                .map(|(api, token)| Api {
                    base_url: &api.base_url,
                    token,
                }),
            roles: &settings.roles,
            min_interval_ms: i64::try_from(settings.reconcile_interval_seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000),
        };
        let summary = reconcile::run(&Fetch, &pass, received).await;
        reconcile::reply(&summary)
    }
}

/// 16 bytes from Web Crypto. If it ever fails, the clock still makes `jti` unique per mint
/// (100ms documents `jti` as a fresh UUID; nothing depends on its unpredictability).
fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if get_random_values(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&Date::now().to_bits().to_le_bytes());
    }
    bytes
}

/// The path of a request URL (`new URL(url).pathname` without the URL API).
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme
        .find('/')
        .and_then(|at| after_scheme.get(at..))
        .unwrap_or("");
    path.split(['?', '#']).next().unwrap_or("").to_owned()
}

/// The I/O of both routes: the global `fetch`, aborted after `UPSTREAM_TIMEOUT_MS`.
struct Fetch;

impl Http for Fetch {
    async fn send(&self, request: http::Request) -> HttpOutcome {
        let started = now_ms();
        match fetch_any(&request).await {
            Ok(outcome) => outcome,
            // An abort by our timer is a timeout; anything else never reached an answer.
            Err(_) if now_ms() - started >= i64::from(UPSTREAM_TIMEOUT_MS) => HttpOutcome::TimedOut,
            Err(_) => HttpOutcome::Unreachable,
        }
    }

    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

async fn fetch_any(request: &http::Request) -> Result<HttpOutcome, JsValue> {
    let init = request_init(
        request.method.as_str(),
        &request.headers,
        request.body.as_deref(),
    )?;
    fetch_answer(&request.url, &init).await
}

/// Web `Headers` from name/value pairs.
fn headers_of(pairs: &[(String, String)]) -> Result<Headers, JsValue> {
    let headers = Headers::new()?;
    for (name, value) in pairs {
        headers.set(name, value)?;
    }
    Ok(headers)
}

/// The `RequestInit` of an outgoing request.
fn request_init(
    method: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> Result<RequestInit, JsValue> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers_of(headers)?.into());
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    Ok(init)
}

fn internal(config: &Config, problem: &'static str, started_ms: i64) -> Reply {
    let log = Log {
        problem: Some(problem.into()),
        ..Log::new(config.debug(), started_ms)
    };
    log.reply(Outcome::Refused(&Error::Internal))
}

/// The environment object the shim passes (names to strings), through serde-wasm-bindgen;
/// anything else (a non-object, a non-string value) is `None`, i.e. misconfigured.
fn env_pairs(env: JsValue) -> Option<Vec<(String, String)>> {
    serde_wasm_bindgen::from_value::<std::collections::BTreeMap<String, String>>(env)
        .ok()
        .map(|pairs| pairs.into_iter().collect())
}

/// A structured value as a plain JS value (objects, not `Map`s, for maps).
#[cfg(feature = "bench")]
fn to_js<T: serde::Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(JsValue::from)
}

/// A request as the core reads it, owned; `incoming` lends it out.
struct Read {
    method: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now_ms: i64,
}

impl Read {
    fn incoming(&self) -> Incoming<'_> {
        Incoming {
            method: &self.method,
            headers: &self.headers,
            body: &self.body,
            now_ms: self.now_ms,
        }
    }
}

/// Reads `request` for the core, or answers it: the preflight's answer (`by_length`: a declared
/// content-length over the limit is refused before the body is read), else the body up to one
/// byte over the limit (enough for the core to answer 413), else a 500 if it cannot be read.
async fn read_request(config: &Config, request: &Request, by_length: bool) -> Result<Read, Reply> {
    let now_ms = now_ms();
    let method = request.method();
    let headers = read_headers(config, &request.headers());
    let content_length = headers
        .iter()
        .filter(|_| by_length)
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    if let Some(reply) = handler::preflight(config, &method, content_length) {
        return Err(reply);
    }
    let cap = config.settings().max_body_bytes.saturating_add(1);
    let Ok(body) = read_body(request, cap).await else {
        return Err(internal(config, "request body could not be read", now_ms));
    };
    Ok(Read {
        method,
        headers,
        body,
        now_ms,
    })
}

async fn handle_request(config: &Config, request: &Request) -> Reply {
    let read = match read_request(config, request, true).await {
        Ok(read) => read,
        Err(reply) => return reply,
    };
    match handler::begin(config, &read.incoming()) {
        Step::Respond(reply) => reply,
        Step::Call(call) => {
            let outcome = Fetch.send(call.request).await;
            handler::finish(call.context, outcome, now_ms())
        }
    }
}

/// The request headers the core reads — `content-length` and the credential headers — fetched
/// by name: a few calls across the boundary instead of an iterator step, an array and two
/// strings for every header the request has.
fn read_headers(config: &Config, headers: &Headers) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(3);
    for name in std::iter::once("content-length").chain(config.settings().verifier.header_names()) {
        if let Ok(Some(value)) = headers.get(name) {
            out.push((name.to_owned(), value));
        }
    }
    out
}

/// Reads at most `cap` bytes; a larger (e.g. chunked) body is cancelled, not buffered whole.
async fn read_body(request: &Request, cap: u64) -> Result<Vec<u8>, JsValue> {
    let Some(stream) = request.body() else {
        return Ok(Vec::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut out = Vec::new();
    loop {
        let result: ReadableStreamReadResult =
            JsFuture::from(reader.read()).await?.unchecked_into();
        if result.get_done().unwrap_or(true) {
            return Ok(out);
        }
        let chunk = Uint8Array::new(&result.get_value());
        let room = cap.saturating_sub(out.len() as u64);
        if u64::from(chunk.length()) >= room {
            let take = u32::try_from(room).unwrap_or(u32::MAX);
            out.extend(chunk.subarray(0, take).to_vec());
            // Stop the sender; a failed cancel changes nothing for the reply.
            let _ = JsFuture::from(reader.cancel()).await;
            return Ok(out);
        }
        out.extend(chunk.to_vec());
    }
}

/// Fetches `url` with `init`, aborted after UPSTREAM_TIMEOUT_MS (the timer is cleared either way).
async fn fetch_answer(url: &str, init: &RequestInit) -> Result<HttpOutcome, JsValue> {
    let controller = AbortController::new()?;
    init.set_signal(Some(&controller.signal()));
    let abort: js_sys::Function = js_sys::Reflect::get(&controller, &JsValue::from_str("abort"))?
        .dyn_into::<js_sys::Function>()?
        .bind0(&controller);
    let timer = set_timeout(&abort, UPSTREAM_TIMEOUT_MS)?;
    let answer = fetch_within(url, init).await;
    clear_timeout(&timer);
    answer
}

/// The fetch and its body, without the timer.
async fn fetch_within(url: &str, init: &RequestInit) -> Result<HttpOutcome, JsValue> {
    let request = Request::new_with_str_and_init(url, init)?;
    let response: Response = JsFuture::from(fetch_with_request(&request)?)
        .await?
        .dyn_into()?;
    let status = response.status();
    let buffer = JsFuture::from(response.array_buffer()?).await?;
    Ok(HttpOutcome::Response {
        status,
        body: Uint8Array::new(&buffer).to_vec(),
    })
}

fn to_response(reply: &Reply) -> Result<Response, JsValue> {
    let init = ResponseInit::new();
    init.set_status(reply.status);
    init.set_headers(&headers_of(&reply.headers)?.into());
    let body = (!reply.body.is_empty()).then_some(reply.body.as_str());
    Response::new_with_opt_str_and_init(body, &init)
}
