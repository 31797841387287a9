//! Environment -> typed `Config`, validated once per isolate. Bad values never throw: they make a
//! config that refuses every request with 500 `misconfigured` (fail closed) and names the variable.

use crate::document;
use crate::roles::{Roles, DEFAULT_IGNORED_ROLES, DEFAULT_SPEAKER_ROLES};
use crate::signature::{AuthMode, Secret, Verifier, DEFAULT_SECRET_HEADER};

/// Default `HMS_TIMESTAMP_TOLERANCE_SECONDS`.
pub const DEFAULT_TOLERANCE_SECONDS: u64 = 900;
/// Default `HMS_MAX_BODY_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 65_536;
/// Largest accepted `HMS_MAX_BODY_BYTES`: 100ms events are a few KB; this bounds memory.
pub const MAX_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
/// Largest accepted tolerance (ten years): anything beyond is surely a unit mistake.
pub const MAX_TOLERANCE_SECONDS: u64 = 315_360_000;
/// Default `HMS_RECONCILE_INTERVAL_SECONDS`: a pass starts at most once a minute.
pub const DEFAULT_RECONCILE_INTERVAL_SECONDS: u64 = 60;
/// Largest accepted reconcile interval (one day): longer leaves lost webhooks wrong too long.
pub const MAX_RECONCILE_INTERVAL_SECONDS: u64 = 86_400;
/// Path of the RPC below `SUPABASE_URL`.
pub const RPC_PATH: &str = "/rest/v1/rpc/hms_apply_event";
/// Default `HMS_API_URL`: 100ms's server API
/// (<https://www.100ms.live/docs/server-side/v2/api-reference/>).
pub const DEFAULT_API_URL: &str = "https://api.100ms.live";

/// Every environment variable the core reads, and the only ones the shim passes in. README's
/// Configure table documents them; a test holds it to this list and to the defaults applied.
/// A new variable is added here; [`Config::from_env`] drops every other name, so a read of an
/// unlisted name finds nothing and its tests fail.
pub const VARIABLES: &[&str] = &[
    "HMS_WEBHOOK_SECRET",
    "HMS_WEBHOOK_SECRET_PREVIOUS",
    "HMS_WEBHOOK_AUTH",
    "HMS_WEBHOOK_SECRET_HEADER",
    "HMS_TIMESTAMP_TOLERANCE_SECONDS",
    "HMS_MAX_BODY_BYTES",
    "HMS_SPEAKER_ROLES",
    "HMS_IGNORED_ROLES",
    "HMS_AUTO_CREATE_ROOMS",
    "HMS_APP_ACCESS_KEY",
    "HMS_APP_SECRET",
    "HMS_API_URL",
    "HMS_RECONCILE_INTERVAL_SECONDS",
    "SUPABASE_URL",
    "SUPABASE_SECRET_KEYS",
    "SUPABASE_SERVICE_ROLE_KEY",
    "SUPABASE_DEBUG",
];

/// Why the configuration is unusable. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misconfig {
    /// The variable at fault.
    pub variable: &'static str,
    /// What is wrong with it, for the log.
    pub reason: String,
}

/// Where and how to call PostgREST.
#[derive(Clone)]
pub struct RestTarget {
    /// Full URL of `hms_apply_event`.
    pub rpc_url: String,
    /// `SUPABASE_URL` without trailing slashes (reconcile's other REST calls live below it).
    pub base_url: String,
    /// The service key sent as `apikey` and bearer token.
    pub api_key: String,
}

/// Debug output of a target: its URL, and its secret fields by name only.
fn debug_target(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    (url_field, url): (&str, &str),
    secret_fields: &[&str],
) -> std::fmt::Result {
    let mut out = f.debug_struct(name);
    out.field(url_field, &url);
    for field in secret_fields {
        out.field(field, &"<redacted>");
    }
    out.finish()
}

impl std::fmt::Debug for RestTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_target(f, "RestTarget", ("rpc_url", &self.rpc_url), &["api_key"])
    }
}

/// 100ms's server API: where it is and the workspace keys that mint management tokens.
#[derive(Clone)]
pub struct ApiTarget {
    /// `HMS_API_URL` without trailing slashes.
    pub base_url: String,
    /// `HMS_APP_ACCESS_KEY` (the token's `access_key` claim; not secret, but not logged).
    pub access_key: String,
    /// `HMS_APP_SECRET`, the HS256 key. Never logged, never in a response.
    pub app_secret: String,
}

impl std::fmt::Debug for ApiTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = ("base_url", self.base_url.as_str());
        debug_target(f, "ApiTarget", url, &["access_key", "app_secret"])
    }
}

/// A fully valid configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Authentication policy and secrets.
    pub verifier: Verifier,
    /// Maximum event age in seconds; 0 disables the freshness check.
    pub tolerance_seconds: u64,
    /// Bodies larger than this get 413.
    pub max_body_bytes: u64,
    /// Role classification.
    pub roles: Roles,
    /// `HMS_AUTO_CREATE_ROOMS`.
    pub auto_create_rooms: bool,
    /// The REST endpoint.
    pub rest: RestTarget,
    /// 100ms's API for reconcile; `None` when no workspace keys are configured (API part off).
    pub api: Option<ApiTarget>,
    /// `HMS_RECONCILE_INTERVAL_SECONDS`: least time between the starts of two passes.
    pub reconcile_interval_seconds: u64,
}

/// A usable configuration of one isolate. Only [`Config::from_env`] makes one, so holding a
/// `Config` means the environment was valid: nothing downstream checks it again.
#[derive(Debug, Clone)]
pub struct Config {
    settings: Settings,
    debug: bool,
}

/// The environment as given; a repeated name resolves to its last value.
struct Env(Vec<(String, String)>);

impl Env {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

fn misconfig(variable: &'static str, reason: impl Into<String>) -> Misconfig {
    Misconfig {
        variable,
        reason: reason.into(),
    }
}

/// An optional variable; empty counts as unset (that is what `supabase secrets set X=` leaves).
fn optional<'e>(env: &'e Env, name: &str) -> Option<&'e str> {
    env.get(name).filter(|v| !v.is_empty())
}

/// A secret-like value: leading/trailing whitespace is a classic paste error, so refuse it
/// rather than silently trimming (the sender would still send the untrimmed value).
fn check_secret_text(variable: &'static str, value: &str) -> Result<(), Misconfig> {
    if value.trim() != value {
        return Err(misconfig(
            variable,
            "has leading or trailing whitespace (paste error?)",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(misconfig(variable, "contains control characters"));
    }
    Ok(())
}

/// Parses `true/false/1/0/yes/no` (case-insensitive).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn bool_var(env: &Env, name: &'static str, default: bool) -> Result<bool, Misconfig> {
    match optional(env, name) {
        None => Ok(default),
        Some(text) => {
            parse_bool(text).ok_or_else(|| misconfig(name, "must be true/false/1/0/yes/no"))
        }
    }
}

fn number_var(
    env: &Env,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Misconfig> {
    let Some(text) = optional(env, name) else {
        return Ok(default);
    };
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|_| misconfig(name, "must be a non-negative integer"))?;
    if !range.contains(&value) {
        return Err(misconfig(
            name,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn secret_var(env: &Env, name: &'static str) -> Result<Option<Secret>, Misconfig> {
    match optional(env, name) {
        None => Ok(None),
        Some(value) => {
            check_secret_text(name, value)?;
            Ok(Some(Secret::new(value)))
        }
    }
}

/// A plain `http(s)://host[/path]` base URL, returned without trailing slashes.
fn base_url(name: &'static str, value: &str) -> Result<String, Misconfig> {
    check_secret_text(name, value)?;
    let lower = value.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| misconfig(name, "must start with http:// or https://"))?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(misconfig(name, "has no host"));
    }
    if value.contains(['?', '#', ' ']) {
        return Err(misconfig(
            name,
            "must be a plain base URL (no query or fragment)",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn supabase_url(env: &Env) -> Result<String, Misconfig> {
    const NAME: &str = "SUPABASE_URL";
    let value = optional(env, NAME).ok_or_else(|| misconfig(NAME, "is not set"))?;
    base_url(NAME, value)
}

/// `HMS_APP_ACCESS_KEY` + `HMS_APP_SECRET` (both or neither) and `HMS_API_URL`.
fn api_target(env: &Env) -> Result<Option<ApiTarget>, Misconfig> {
    const KEY: &str = "HMS_APP_ACCESS_KEY";
    const SECRET: &str = "HMS_APP_SECRET";
    const URL: &str = "HMS_API_URL";
    let url = base_url(URL, optional(env, URL).unwrap_or(DEFAULT_API_URL))?;
    match (optional(env, KEY), optional(env, SECRET)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(misconfig(SECRET, "is not set but HMS_APP_ACCESS_KEY is")),
        (None, Some(_)) => Err(misconfig(KEY, "is not set but HMS_APP_SECRET is")),
        (Some(access_key), Some(app_secret)) => {
            check_secret_text(KEY, access_key)?;
            check_secret_text(SECRET, app_secret)?;
            Ok(Some(ApiTarget {
                base_url: url,
                access_key: access_key.to_owned(),
                app_secret: app_secret.to_owned(),
            }))
        }
    }
}

/// `SUPABASE_SECRET_KEYS` as far as it is read: other keys ignored, `default` at most once.
#[derive(serde::Deserialize)]
struct SecretKeys {
    default: Option<String>,
}

/// `SUPABASE_SECRET_KEYS` (`{"default": "..."}`) first, else `SUPABASE_SERVICE_ROLE_KEY`.
fn api_key(env: &Env) -> Result<String, Misconfig> {
    const KEYS: &str = "SUPABASE_SECRET_KEYS";
    const LEGACY: &str = "SUPABASE_SERVICE_ROLE_KEY";
    // Not a JSON object, or a `default` that is not a string: fall back to the legacy key.
    let from_keys = optional(env, KEYS)
        .and_then(|text| document::read::<SecretKeys>(text).ok()?.default)
        .filter(|key| !key.is_empty());
    if let Some(key) = from_keys {
        check_secret_text(KEYS, &key)?;
        return Ok(key);
    }
    if let Some(key) = optional(env, LEGACY) {
        check_secret_text(LEGACY, key)?;
        return Ok(key.to_owned());
    }
    if optional(env, KEYS).is_some() {
        return Err(misconfig(
            KEYS,
            "has no non-empty \"default\" key and SUPABASE_SERVICE_ROLE_KEY is not set",
        ));
    }
    Err(misconfig(
        KEYS,
        "neither SUPABASE_SECRET_KEYS nor SUPABASE_SERVICE_ROLE_KEY is set",
    ))
}

fn settings(env: &Env) -> Result<Settings, Misconfig> {
    const SECRET: &str = "HMS_WEBHOOK_SECRET";
    let current = secret_var(env, SECRET)?.ok_or_else(|| misconfig(SECRET, "is not set"))?;
    let previous = secret_var(env, "HMS_WEBHOOK_SECRET_PREVIOUS")?;

    let mode = match optional(env, "HMS_WEBHOOK_AUTH") {
        None => AuthMode::Either,
        Some(text) => AuthMode::parse(text)
            .ok_or_else(|| misconfig("HMS_WEBHOOK_AUTH", "must be signature, header or either"))?,
    };

    let header_name = optional(env, "HMS_WEBHOOK_SECRET_HEADER")
        .map(|h| h.trim().to_ascii_lowercase())
        .unwrap_or_else(|| DEFAULT_SECRET_HEADER.to_owned());
    if header_name.is_empty() || !header_name.chars().all(is_token_char) {
        return Err(misconfig(
            "HMS_WEBHOOK_SECRET_HEADER",
            "must be a valid HTTP header name",
        ));
    }

    let tolerance_seconds = number_var(
        env,
        "HMS_TIMESTAMP_TOLERANCE_SECONDS",
        DEFAULT_TOLERANCE_SECONDS,
        0..=MAX_TOLERANCE_SECONDS,
    )?;
    let max_body_bytes = number_var(
        env,
        "HMS_MAX_BODY_BYTES",
        DEFAULT_MAX_BODY_BYTES,
        1..=MAX_MAX_BODY_BYTES,
    )?;

    // Roles: an explicitly empty list is unset (default), like every optional variable.
    let roles = Roles::from_lists(
        optional(env, "HMS_SPEAKER_ROLES").unwrap_or(DEFAULT_SPEAKER_ROLES),
        optional(env, "HMS_IGNORED_ROLES").unwrap_or(DEFAULT_IGNORED_ROLES),
    );
    let auto_create_rooms = bool_var(env, "HMS_AUTO_CREATE_ROOMS", false)?;
    let reconcile_interval_seconds = number_var(
        env,
        "HMS_RECONCILE_INTERVAL_SECONDS",
        DEFAULT_RECONCILE_INTERVAL_SECONDS,
        0..=MAX_RECONCILE_INTERVAL_SECONDS,
    )?;

    let base_url = supabase_url(env)?;
    let api_key = api_key(env)?;
    let api = api_target(env)?;

    let mut secrets = vec![current];
    secrets.extend(previous);
    Ok(Settings {
        verifier: Verifier::new(mode, header_name, secrets),
        tolerance_seconds,
        max_body_bytes,
        roles,
        auto_create_rooms,
        rest: RestTarget {
            rpc_url: format!("{base_url}{RPC_PATH}"),
            base_url,
            api_key,
        },
        api,
        reconcile_interval_seconds,
    })
}

impl Misconfig {
    /// A problem with `variable` (also used when the boundary cannot even read the environment).
    pub fn new(variable: &'static str, reason: impl Into<String>) -> Self {
        misconfig(variable, reason)
    }
}

impl Config {
    /// Builds the configuration from environment pairs (names outside `VARIABLES` are
    /// dropped), or says which variable makes it unusable.
    pub fn from_env<I, K, V>(pairs: I) -> Result<Config, Misconfig>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let env = Env(pairs
            .into_iter()
            .filter(|(k, _)| VARIABLES.contains(&k.as_ref()))
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect());
        let debug = bool_var(&env, "SUPABASE_DEBUG", false)?;
        Ok(Config {
            settings: settings(&env)?,
            debug,
        })
    }

    /// The validated settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `SUPABASE_DEBUG`: add decision details to the log line.
    pub fn debug(&self) -> bool {
        self.debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tests read from a `from_env` result.
    trait Outcome {
        fn settings(&self) -> Result<&Settings, &Misconfig>;
        fn debug(&self) -> bool;
    }

    impl Outcome for Result<Config, Misconfig> {
        fn settings(&self) -> Result<&Settings, &Misconfig> {
            self.as_ref().map(Config::settings)
        }
        fn debug(&self) -> bool {
            self.as_ref().is_ok_and(Config::debug)
        }
    }

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("HMS_WEBHOOK_SECRET", "s3cret-value"),
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_xyz"}"#),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, Misconfig> {
        let mut env = base();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, v));
        }
        Config::from_env(env)
    }

    fn without(name: &str) -> Result<Config, Misconfig> {
        Config::from_env(base().into_iter().filter(|(k, _)| *k != name))
    }

    fn problem(config: &Result<Config, Misconfig>) -> &Misconfig {
        config.settings().unwrap_err()
    }

    /// The variable the base environment plus `extra` is refused for.
    fn refused_by(extra: &[(&'static str, &'static str)]) -> &'static str {
        problem(&with(extra)).variable
    }

    #[test]
    fn defaults() {
        let config = with(&[]);
        let s = config.settings().unwrap();
        assert_eq!(s.tolerance_seconds, 900);
        assert_eq!(s.max_body_bytes, 65_536);
        assert!(!s.auto_create_rooms);
        assert_eq!(s.reconcile_interval_seconds, 60);
        assert!(!config.debug());
        assert_eq!(
            s.rest.rpc_url,
            "https://abc.supabase.co/rest/v1/rpc/hms_apply_event"
        );
        assert_eq!(s.rest.api_key, "sb_secret_xyz");
        assert_eq!(s.roles, Roles::default());
    }

    #[test]
    fn trailing_slashes_on_the_url_are_tolerated() {
        let config = with(&[("SUPABASE_URL", "http://127.0.0.1:54321//")]);
        assert_eq!(
            config.settings().unwrap().rest.rpc_url,
            "http://127.0.0.1:54321/rest/v1/rpc/hms_apply_event"
        );
    }

    #[test]
    fn required_variables() {
        assert_eq!(
            problem(&without("HMS_WEBHOOK_SECRET")).variable,
            "HMS_WEBHOOK_SECRET"
        );
        assert_eq!(
            refused_by(&[("HMS_WEBHOOK_SECRET", "")]),
            "HMS_WEBHOOK_SECRET"
        );
        assert_eq!(problem(&without("SUPABASE_URL")).variable, "SUPABASE_URL");
        assert_eq!(
            problem(&without("SUPABASE_SECRET_KEYS")).variable,
            "SUPABASE_SECRET_KEYS"
        );
    }

    #[test]
    fn secrets_with_whitespace_are_refused() {
        for bad in ["secret\n", " secret", "secret ", "\tsecret", "sec\u{0}ret"] {
            let config = with(&[("HMS_WEBHOOK_SECRET", bad)]);
            let p = problem(&config);
            assert_eq!(p.variable, "HMS_WEBHOOK_SECRET");
            assert!(
                !p.reason.contains("secret"),
                "reason leaks value: {}",
                p.reason
            );
        }
        let p = problem(&with(&[("HMS_WEBHOOK_SECRET_PREVIOUS", "old\n")])).clone();
        assert_eq!(p.variable, "HMS_WEBHOOK_SECRET_PREVIOUS");
        assert!(p.reason.contains("whitespace"));
        let p = problem(&with(&[("SUPABASE_SECRET_KEYS", r#"{"default":"key "}"#)])).clone();
        assert_eq!(p.variable, "SUPABASE_SECRET_KEYS");
    }

    #[test]
    fn service_role_key_is_the_fallback() {
        let env = vec![
            ("HMS_WEBHOOK_SECRET", "s"),
            ("SUPABASE_URL", "https://x.supabase.co"),
            ("SUPABASE_SERVICE_ROLE_KEY", "eyJlegacy"),
        ];
        assert_eq!(
            Config::from_env(env.clone())
                .settings()
                .unwrap()
                .rest
                .api_key,
            "eyJlegacy"
        );
        let mut with_bad_keys = env.clone();
        with_bad_keys.push(("SUPABASE_SECRET_KEYS", r#"{"other":"k"}"#));
        assert_eq!(
            Config::from_env(with_bad_keys)
                .settings()
                .unwrap()
                .rest
                .api_key,
            "eyJlegacy"
        );
        let mut preferred = env;
        preferred.push(("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_new"}"#));
        assert_eq!(
            Config::from_env(preferred).settings().unwrap().rest.api_key,
            "sb_secret_new"
        );
        let p = problem(&with(&[("SUPABASE_SECRET_KEYS", "not json")])).clone();
        assert_eq!(p.variable, "SUPABASE_SECRET_KEYS");
    }

    #[test]
    fn booleans() {
        for (text, value) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("Yes", true),
            ("false", false),
            ("0", false),
            ("NO", false),
        ] {
            assert_eq!(parse_bool(text), Some(value), "{text}");
            let config = with(&[("HMS_AUTO_CREATE_ROOMS", text), ("SUPABASE_DEBUG", text)]);
            assert_eq!(config.settings().unwrap().auto_create_rooms, value);
            assert_eq!(config.debug(), value);
        }
        assert_eq!(
            refused_by(&[("HMS_AUTO_CREATE_ROOMS", "maybe")]),
            "HMS_AUTO_CREATE_ROOMS"
        );
        assert_eq!(refused_by(&[("SUPABASE_DEBUG", "on")]), "SUPABASE_DEBUG");
    }

    #[test]
    fn numbers() {
        let s = with(&[
            ("HMS_TIMESTAMP_TOLERANCE_SECONDS", "0"),
            ("HMS_MAX_BODY_BYTES", " 1024 "),
            ("HMS_RECONCILE_INTERVAL_SECONDS", "0"),
        ]);
        assert_eq!(s.settings().unwrap().tolerance_seconds, 0);
        assert_eq!(s.settings().unwrap().max_body_bytes, 1024);
        assert_eq!(s.settings().unwrap().reconcile_interval_seconds, 0);
        for (name, bad) in [
            ("HMS_TIMESTAMP_TOLERANCE_SECONDS", "-1"),
            ("HMS_TIMESTAMP_TOLERANCE_SECONDS", "15m"),
            ("HMS_TIMESTAMP_TOLERANCE_SECONDS", "999999999999"),
            ("HMS_MAX_BODY_BYTES", "0"),
            ("HMS_MAX_BODY_BYTES", "1.5"),
            ("HMS_MAX_BODY_BYTES", "99999999999"),
            ("HMS_RECONCILE_INTERVAL_SECONDS", "-5"),
            ("HMS_RECONCILE_INTERVAL_SECONDS", "1m"),
            ("HMS_RECONCILE_INTERVAL_SECONDS", "86401"),
        ] {
            assert_eq!(refused_by(&[(name, bad)]), name, "{bad}");
        }
    }

    #[test]
    fn auth_mode_and_header_name() {
        assert_eq!(
            refused_by(&[("HMS_WEBHOOK_AUTH", "hmac")]),
            "HMS_WEBHOOK_AUTH"
        );
        assert!(with(&[("HMS_WEBHOOK_AUTH", "Header")]).settings().is_ok());
        assert_eq!(
            refused_by(&[("HMS_WEBHOOK_SECRET_HEADER", "x secret")]),
            "HMS_WEBHOOK_SECRET_HEADER"
        );
        assert!(with(&[("HMS_WEBHOOK_SECRET_HEADER", "X-HMS-Secret")])
            .settings()
            .is_ok());
    }

    #[test]
    fn url_validation() {
        for bad in [
            "abc.supabase.co",
            "ftp://x",
            "https://",
            "https:///",
            "https://x?y=1",
        ] {
            assert_eq!(
                refused_by(&[("SUPABASE_URL", bad)]),
                "SUPABASE_URL",
                "{bad}"
            );
        }
    }

    #[test]
    fn role_lists() {
        let config = with(&[
            ("HMS_SPEAKER_ROLES", "Stage, Host"),
            ("HMS_IGNORED_ROLES", "bot"),
        ]);
        let roles = &config.settings().unwrap().roles;
        assert_eq!(roles.classify("stage"), crate::roles::RoleClass::Speaker);
        assert_eq!(
            roles.classify("moderator"),
            crate::roles::RoleClass::Listener
        );
        assert_eq!(roles.classify("BOT"), crate::roles::RoleClass::Ignored);
    }

    #[test]
    fn debug_format_hides_secrets_and_keys() {
        let text = format!(
            "{:?}",
            with(&[
                ("HMS_APP_ACCESS_KEY", "access-key-abc"),
                ("HMS_APP_SECRET", "app-secret-xyz")
            ])
        );
        assert!(!text.contains("s3cret-value"));
        assert!(!text.contains("sb_secret_xyz"));
        assert!(!text.contains("access-key-abc"));
        assert!(!text.contains("app-secret-xyz"));
    }

    #[test]
    fn api_credentials_come_in_pairs() {
        assert!(with(&[]).settings().unwrap().api.is_none());
        let both = with(&[
            ("HMS_APP_ACCESS_KEY", "ak"),
            ("HMS_APP_SECRET", "as"),
            ("HMS_API_URL", "http://127.0.0.1:9999/"),
        ]);
        let api = both.settings().unwrap().api.clone().unwrap();
        assert_eq!(api.base_url, "http://127.0.0.1:9999");
        assert_eq!(
            (api.access_key.as_str(), api.app_secret.as_str()),
            ("ak", "as")
        );
        let default_url = with(&[("HMS_APP_ACCESS_KEY", "ak"), ("HMS_APP_SECRET", "as")]);
        assert_eq!(
            default_url
                .settings()
                .unwrap()
                .api
                .as_ref()
                .unwrap()
                .base_url,
            DEFAULT_API_URL
        );
        assert_eq!(
            refused_by(&[("HMS_APP_ACCESS_KEY", "ak")]),
            "HMS_APP_SECRET"
        );
        assert_eq!(
            refused_by(&[("HMS_APP_SECRET", "as")]),
            "HMS_APP_ACCESS_KEY"
        );
        assert_eq!(
            refused_by(&[("HMS_APP_ACCESS_KEY", "ak"), ("HMS_APP_SECRET", "as\n")]),
            "HMS_APP_SECRET"
        );
        // A bad URL is refused even before the keys are set: it is validated once, up front.
        assert_eq!(
            refused_by(&[("HMS_API_URL", "api.100ms.live")]),
            "HMS_API_URL"
        );
        assert_eq!(
            with(&[]).settings().unwrap().rest.base_url,
            "https://abc.supabase.co"
        );
    }

    /// README's configuration table is the one users read: it names exactly `VARIABLES`, and a
    /// default it states is the one `from_env` applies (setting the variable to it changes
    /// nothing, while another value does, so the comparison can fail).
    #[test]
    fn readme_table_matches_variables() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Configure")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configure section");
        let rows: Vec<Vec<&str>> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| line.trim_matches('|').split(" | ").map(str::trim).collect())
            .collect();
        let ticked = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        };
        let mut named: Vec<String> = rows.iter().flat_map(|row| ticked(row[0])).collect();
        named.sort();
        let mut listed: Vec<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
        listed.sort();
        assert_eq!(named, listed, "README's Configure table against VARIABLES");

        // Keys set, so `HMS_API_URL` shows in the configuration too.
        let keys = [("HMS_APP_ACCESS_KEY", "ak"), ("HMS_APP_SECRET", "as")];
        let shown = |extra: &[(&'static str, &'static str)]| {
            let mut env = keys.to_vec();
            env.extend_from_slice(extra);
            format!("{:?}", with(&env).unwrap())
        };
        let plain = shown(&[]);
        let mut checked = 0;
        for row in &rows {
            let (names, defaults) = (ticked(row[0]), ticked(row[1]));
            let ([name], [default]) = (names.as_slice(), defaults.as_slice()) else {
                continue;
            };
            let name: &'static str = VARIABLES.iter().find(|v| **v == name).unwrap();
            let default: &'static str = Box::leak(default.clone().into_boxed_str());
            let other: &'static str = match default {
                "true" => "false",
                "false" => "true",
                "either" => "header",
                _ if default.parse::<u64>().is_ok() => "1",
                _ if default.starts_with("https://") => "https://api.example.com",
                _ if default.contains(',') => "host",
                _ => "x-other-name",
            };
            assert_eq!(
                shown(&[(name, default)]),
                plain,
                "{name}: README default {default}"
            );
            assert_ne!(
                shown(&[(name, other)]),
                plain,
                "{name}: {other} must differ"
            );
            checked += 1;
        }
        assert!(checked >= 9, "only {checked} defaults checked");
    }
}
