//! 100ms management tokens (100ms-api.md §1): an HS256 JWT signed with the workspace's
//! `app_secret`, claims `access_key`, `type: "management"`, `version: 2`, `iat`, `nbf`, `exp`,
//! `jti`. Minted from the configured keys and reused until shortly before it expires. The clock
//! and the randomness for `jti` are arguments, so minting is pure.

use crate::json::ObjectWriter;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Lifetime of a minted token: 24 h, as in 100ms's own sample.
pub const LIFETIME_SECONDS: i64 = 24 * 3600;
/// A cached token is replaced this long before its `exp`, so no request carries one that
/// expires in flight (and a clock a little ahead of ours still accepts it).
pub const RENEW_BEFORE_SECONDS: i64 = 600;

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 §5 base64url without padding (what JWS compact serialisation uses).
fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            // index < 64 by the mask.
            out.push(char::from(
                BASE64URL.get(index as usize).copied().unwrap_or(b'A'),
            ));
        }
    }
    out
}

/// A UUID v4 in its text form from 16 random bytes (RFC 9562 §5.4: version and variant bits).
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    let part = |from: usize, to: usize| hex.get(from..to).unwrap_or("");
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
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
    let mut claims_json = String::with_capacity(192);
    ObjectWriter::new(&mut claims_json)
        .member("access_key", access_key)
        .member("type", "management")
        .member("version", &2u64)
        .member("iat", &now_s)
        .member("nbf", &now_s)
        .member("exp", &expires_at)
        .member("jti", &uuid_v4(random))
        .end();
    let signing_input = format!(
        "{}.{}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(claims_json.as_bytes())
    );
    // HMAC takes keys of any length; the fallback only keeps this total.
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(signing_input.as_bytes());
    let signature = base64url(&mac.finalize().into_bytes());
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
        // Test-only decoder: the inverse of `base64url`, written independently.
        let mut bits = 0u32;
        let mut count = 0;
        let mut out = Vec::new();
        for c in part.bytes() {
            let v = BASE64URL.iter().position(|&b| b == c).unwrap() as u32;
            bits = (bits << 6) | v;
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
        out
    }

    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        // RFC 4648 §10 test vectors, padding removed.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected);
        }
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
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
