//! 100ms management tokens ("Management token for REST API",
//! <https://www.100ms.live/docs/get-started/v2/get-started/security-and-tokens>): an HS256 JWT
//! signed with the workspace's
//! `app_secret`, claims `access_key`, `type: "management"`, `version: 2`, `iat`, `nbf`, `exp`,
//! `jti`. Minted from the configured keys and reused until shortly before it expires. The clock
//! and the randomness for `jti` are arguments, so minting is pure.

use crate::document;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// Lifetime of a minted token: 24 h, as in 100ms's own sample.
pub const LIFETIME_SECONDS: i64 = 24 * 3600;
/// A cached token is replaced this long before its `exp`, so no request carries one that
/// expires in flight (and a clock a little ahead of ours still accepts it).
pub const RENEW_BEFORE_SECONDS: i64 = 600;

/// A UUID v4 in its text form from 16 random bytes (RFC 9562 §5.4: version and variant bits).
pub fn uuid_v4(bytes: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The claims 100ms reads (the token page above), in the order its sample writes them.
#[derive(Serialize)]
struct Claims<'a> {
    access_key: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
}

/// A minted token and when it expires.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The compact JWS (`header.claims.signature`). Never log it.
    pub value: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Mints a management token valid from `now_s` for `LIFETIME_SECONDS`.
pub fn mint(access_key: &str, app_secret: &str, now_s: i64, random: [u8; 16]) -> Token {
    let expires_at = now_s.saturating_add(LIFETIME_SECONDS);
    let claims = document::write(&Claims {
        access_key,
        kind: "management",
        version: 2,
        iat: now_s,
        nbf: now_s,
        exp: expires_at,
        jti: uuid_v4(random),
    });
    // RFC 7515 compact serialisation: base64url without padding.
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    // HMAC takes keys of any length; the fallback only keeps this total.
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Token {
        value: format!("{signing_input}.{signature}"),
        expires_at,
    }
}

/// One isolate's token: minted on first use, reused until `RENEW_BEFORE_SECONDS` before `exp`.
#[derive(Debug, Default, Clone)]
pub struct TokenCache {
    current: Option<Token>,
}

impl TokenCache {
    /// The token to send now; mints a new one (drawing `random()`) only when needed.
    pub fn get(
        &mut self,
        access_key: &str,
        app_secret: &str,
        now_s: i64,
        random: impl FnOnce() -> [u8; 16],
    ) -> String {
        match &self.current {
            Some(token) if now_s < token.expires_at - RENEW_BEFORE_SECONDS => token.value.clone(),
            _ => {
                let token = mint(access_key, app_secret, now_s, random());
                let value = token.value.clone();
                self.current = Some(token);
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn decode(part: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(part).unwrap()
    }

    #[test]
    fn minted_token_has_the_documented_header_and_claims() {
        let token = mint("access-1", "secret-1", 1_700_000_000, [7; 16]);
        let parts: Vec<&str> = token.value.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(header, serde_json::json!({"alg":"HS256","typ":"JWT"}));
        let claims: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(claims["access_key"], "access-1");
        assert_eq!(claims["type"], "management");
        assert_eq!(claims["version"], 2);
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nbf"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + LIFETIME_SECONDS);
        assert_eq!(claims["jti"], "07070707-0707-4707-8707-070707070707");
        assert_eq!(token.expires_at, 1_700_000_000 + LIFETIME_SECONDS);
        // The signature is HMAC-SHA256 of `header.claims` under the app secret.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret-1").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&decode(parts[2])).unwrap();
        assert!(!format!("{token:?}").contains(&token.value));
    }

    #[test]
    fn uuid_has_version_and_variant_bits() {
        let id = uuid_v4([0xff; 16]);
        assert_eq!(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn cache_reuses_until_shortly_before_expiry() {
        let mut cache = TokenCache::default();
        let draws = std::cell::Cell::new(0u8);
        let get = |cache: &mut TokenCache, now: i64| {
            cache.get("ak", "as", now, || {
                draws.set(draws.get() + 1);
                [draws.get(); 16]
            })
        };
        let first = get(&mut cache, 1_000);
        assert_eq!(get(&mut cache, 1_000 + 3600), first);
        let last_reuse = 1_000 + LIFETIME_SECONDS - RENEW_BEFORE_SECONDS - 1;
        assert_eq!(get(&mut cache, last_reuse), first);
        let renewed = get(&mut cache, last_reuse + 1);
        assert_ne!(renewed, first);
        assert_eq!(draws.get(), 2);
        // A clock that went backwards past the token's start still reuses it (nbf is 100ms's
        // check; a fresh token would carry the same wrong time).
        assert_eq!(get(&mut cache, last_reuse), renewed);
    }
}
