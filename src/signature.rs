//! Request authentication: HMAC-SHA256 of the raw body (`x-100ms-signature`) and the static
//! secret header set in the 100ms dashboard, both constant time, with secret rotation.

use crate::error::Error;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the hex HMAC-SHA256 of the raw body (100ms HIPAA workspaces).
pub const SIGNATURE_HEADER: &str = "x-100ms-signature";
/// Default name of the static secret header.
pub const DEFAULT_SECRET_HEADER: &str = "x-webhook-secret";

/// Fixed key for hashing static header values before comparing them: comparing two
/// fixed-length MACs hides the length of the configured secret (no early exit on length).
const HEADER_COMPARE_KEY: &[u8] = b"hms-webhook/static-secret-header/v1";

/// Which credentials a request may present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Only `x-100ms-signature`.
    Signature,
    /// Only the static secret header.
    Header,
    /// Either one; the first valid one wins.
    Either,
}

impl AuthMode {
    /// Parses `signature`, `header` or `either` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "signature" => Some(AuthMode::Signature),
            "header" => Some(AuthMode::Header),
            "either" => Some(AuthMode::Either),
            _ => None,
        }
    }

    fn accepts_signature(self) -> bool {
        matches!(self, AuthMode::Signature | AuthMode::Either)
    }

    fn accepts_header(self) -> bool {
        matches!(self, AuthMode::Header | AuthMode::Either)
    }
}

/// The credential that authenticated a request (logged in debug mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A valid `x-100ms-signature`.
    Signature,
    /// A valid static secret header.
    Header,
}

impl AuthMethod {
    /// Name used in the debug log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Signature => "signature",
            AuthMethod::Header => "header",
        }
    }
}

/// One configured secret: the HMAC key and the digest of its static-header form.
#[derive(Clone)]
pub struct Secret {
    /// HMAC state after absorbing the key: cloned per request instead of re-keying (saves
    /// two SHA-256 blocks per request).
    keyed: HmacSha256,
    /// The same for the fixed header-compare key.
    header_keyed: HmacSha256,
    header_digest: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn header_keyed() -> HmacSha256 {
    // HMAC accepts keys of any length, so this never fails; the fallback keeps it panic-free.
    HmacSha256::new_from_slice(HEADER_COMPARE_KEY)
        .unwrap_or_else(|_| HmacSha256::new(&Default::default()))
}

impl Secret {
    /// Wraps a secret value (already validated by the config).
    pub fn new(value: &str) -> Self {
        let header_keyed = header_keyed();
        let mut header = header_keyed.clone();
        header.update(value.as_bytes());
        let header_digest = header.finalize().into_bytes().into();
        // HMAC accepts keys of any length, so this never fails; the fallback keeps it panic-free.
        let keyed = HmacSha256::new_from_slice(value.as_bytes())
            .unwrap_or_else(|_| HmacSha256::new(&Default::default()));
        Secret {
            keyed,
            header_keyed,
            header_digest,
        }
    }

    fn body_mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac
    }

    /// Checks a signature header value: 64 hex digits (either case), optionally `sha256=`.
    /// Anything else — empty, truncated, too long, odd length, other prefix — fails.
    pub fn verify_signature(&self, body: &[u8], header_value: &str) -> bool {
        let text = header_value.trim();
        let hex_part = text.strip_prefix("sha256=").unwrap_or(text);
        let Ok(tag) = hex::decode(hex_part) else {
            return false;
        };
        // `verify_slice` checks the length, then compares in constant time.
        self.body_mac(body).verify_slice(&tag).is_ok()
    }

    /// Constant-time check of a static header value.
    pub fn header_matches(&self, presented: &[u8]) -> bool {
        let mut mac = self.header_keyed.clone();
        mac.update(presented);
        mac.verify_slice(&self.header_digest).is_ok()
    }
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret` (what a sender puts in
/// `x-100ms-signature`); the tests sign with it, the function only verifies.
#[cfg(test)]
pub fn sign_hex(secret: &str, body: &[u8]) -> String {
    hex::encode(Secret::new(secret).body_mac(body).finalize().into_bytes())
}

/// The configured authentication policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    mode: AuthMode,
    header_name: String,
    /// Current secret first, then the previous one during a rotation.
    secrets: Vec<Secret>,
}

/// The bytes a header value arrived as. Header values are byte strings (Fetch): the runtime
/// hands each byte over as one character U+0000..U+00FF (Latin-1), so a secret with non-ASCII
/// characters, sent as its UTF-8 bytes, arrives as those bytes one character each. A character
/// above U+00FF cannot come from a runtime: None, which matches no secret.
fn header_bytes(value: &str) -> Option<Vec<u8>> {
    value.chars().map(|c| u8::try_from(c).ok()).collect()
}

fn find_header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Verifier {
    /// A verifier; `header_name` must already be lower-case.
    pub fn new(mode: AuthMode, header_name: String, secrets: Vec<Secret>) -> Self {
        Verifier {
            mode,
            header_name,
            secrets,
        }
    }

    /// The (lower-case) request headers [`Verifier::check`] reads: the boundary fetches only
    /// these instead of copying every header across.
    pub fn header_names(&self) -> [&str; 2] {
        [SIGNATURE_HEADER, &self.header_name]
    }

    /// Authenticates a request from its lower-cased headers and raw body.
    ///
    /// The error only says whether credentials were missing or invalid, never which check
    /// failed, so a prober learns nothing about the configuration.
    pub fn check(&self, headers: &[(String, String)], body: &[u8]) -> Result<AuthMethod, Error> {
        let mut presented = false;
        if self.mode.accepts_signature() {
            if let Some(value) = find_header(headers, SIGNATURE_HEADER) {
                presented = true;
                if self.secrets.iter().any(|s| s.verify_signature(body, value)) {
                    return Ok(AuthMethod::Signature);
                }
            }
        }
        if self.mode.accepts_header() {
            if let Some(value) = find_header(headers, &self.header_name) {
                presented = true;
                let bytes = header_bytes(value);
                if bytes
                    .as_deref()
                    .is_some_and(|b| self.secrets.iter().any(|s| s.header_matches(b)))
                {
                    return Ok(AuthMethod::Header);
                }
            }
        }
        Err(if presented {
            Error::InvalidCredentials
        } else {
            Error::MissingCredentials
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published vector (docs "Validating webhook deliveries").
    const GH_SECRET: &str = "It's a Secret to Everybody";
    const GH_BODY: &[u8] = b"Hello, World!";
    const GH_SIG: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    /// A 100ms-shaped body; signatures pinned with Python's hmac module and `openssl dgst`.
    const HMS_BODY: &[u8] = br#"{"version":"2.0","id":"7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81","timestamp":"2024-10-04T18:03:10Z","type":"peer.join.success","data":{"room_id":"6501c1d2e3f4a5b6c7d8e9f0","session_id":"6702a7b8c9d0e1f2a3b4c5d6","peer_id":"a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845","role":"listener","joined_at":"2024-10-04T18:03:10.55810264Z","session_started_at":"2024-10-04T18:00:02.183742915Z"}}"#;
    const HMS_SECRET: &str = "hms_test_secret_0123456789";
    const HMS_SIG: &str = "e3b90dd37e54054a0ff8f1238223294c9c7a8186148814899eb67b9aaf07965f";
    const PREV_SECRET: &str = "previous-secret";
    const PREV_SIG: &str = "b267e0a4246d647553723db2047674e8eafb3cc5ea7dc6600b1bd856aee04cff";

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn verifier(mode: AuthMode) -> Verifier {
        Verifier::new(
            mode,
            DEFAULT_SECRET_HEADER.into(),
            vec![Secret::new(HMS_SECRET), Secret::new(PREV_SECRET)],
        )
    }

    #[test]
    fn a_non_ascii_secret_matches_the_header_as_it_arrives() {
        let secret = "sécret-ключ-0123456789";
        let v = Verifier::new(
            AuthMode::Either,
            DEFAULT_SECRET_HEADER.into(),
            vec![Secret::new(secret)],
        );
        // Sent as its UTF-8 bytes, handed over by the runtime one Latin-1 character per byte.
        let arrived: String = secret.bytes().map(char::from).collect();
        assert_eq!(
            v.check(&headers(&[(DEFAULT_SECRET_HEADER, &arrived)]), b"{}"),
            Ok(AuthMethod::Header)
        );
        // The decoded text is not what a runtime delivers: it matches nothing.
        assert_eq!(
            v.check(&headers(&[(DEFAULT_SECRET_HEADER, secret)]), b"{}"),
            Err(Error::InvalidCredentials)
        );
        // The HMAC key is the secret's UTF-8.
        let signature = sign_hex(secret, HMS_BODY);
        assert_eq!(
            v.check(&headers(&[(SIGNATURE_HEADER, &signature)]), HMS_BODY),
            Ok(AuthMethod::Signature)
        );
        // ASCII is the same either way.
        let ascii = verifier(AuthMode::Header);
        assert_eq!(
            ascii.check(&headers(&[(DEFAULT_SECRET_HEADER, HMS_SECRET)]), b"{}"),
            Ok(AuthMethod::Header)
        );
    }

    #[test]
    fn github_vector() {
        assert_eq!(sign_hex(GH_SECRET, GH_BODY), GH_SIG);
        let s = Secret::new(GH_SECRET);
        assert!(s.verify_signature(GH_BODY, GH_SIG));
        assert!(s.verify_signature(GH_BODY, &format!("sha256={GH_SIG}")));
    }

    #[test]
    fn hms_vectors() {
        assert_eq!(sign_hex(HMS_SECRET, HMS_BODY), HMS_SIG);
        assert_eq!(sign_hex(PREV_SECRET, HMS_BODY), PREV_SIG);
        assert!(Secret::new(HMS_SECRET).verify_signature(HMS_BODY, HMS_SIG));
    }

    #[test]
    fn uppercase_hex_and_surrounding_space_are_accepted() {
        let s = Secret::new(HMS_SECRET);
        assert!(s.verify_signature(HMS_BODY, &HMS_SIG.to_uppercase()));
        assert!(s.verify_signature(HMS_BODY, &format!(" sha256={} ", HMS_SIG.to_uppercase())));
    }

    #[test]
    fn malformed_signatures_fail() {
        let s = Secret::new(HMS_SECRET);
        let mut flipped = hex::decode(HMS_SIG).unwrap();
        flipped[7] ^= 0x01;
        let flipped = hex::encode(flipped);
        let bad = vec![
            String::new(),
            "sha256=".into(),
            HMS_SIG[..63].to_string(),          // odd length
            HMS_SIG[..62].to_string(),          // truncated
            HMS_SIG[..32].to_string(),          // half
            format!("{HMS_SIG}00"),             // too long
            flipped,                            // one bit flipped
            format!("sha1={HMS_SIG}"),          // wrong prefix
            format!("SHA256={HMS_SIG}"),        // prefix is case-sensitive
            format!("v1,{HMS_SIG}"),            // Standard Webhooks style
            format!("sha256=sha256={HMS_SIG}"), // doubled prefix
            format!("{}zz", &HMS_SIG[..62]),    // not hex
            format!("{HMS_SIG} {HMS_SIG}"),     // list
            PREV_SIG.to_string(),               // other secret's signature
        ];
        for sig in bad {
            assert!(!s.verify_signature(HMS_BODY, &sig), "accepted {sig:?}");
        }
    }

    #[test]
    fn tampered_body_fails() {
        let s = Secret::new(HMS_SECRET);
        let mut body = HMS_BODY.to_vec();
        body[10] ^= 0x20;
        assert!(!s.verify_signature(&body, HMS_SIG));
        assert!(!s.verify_signature(&HMS_BODY[..HMS_BODY.len() - 1], HMS_SIG));
        let mut longer = HMS_BODY.to_vec();
        longer.push(b' ');
        assert!(!s.verify_signature(&longer, HMS_SIG));
    }

    #[test]
    fn static_header_compares_exact_bytes() {
        let s = Secret::new(HMS_SECRET);
        assert!(s.header_matches(HMS_SECRET.as_bytes()));
        for bad in [
            "",
            "hms_test_secret_012345678",
            "hms_test_secret_01234567890",
            "HMS_TEST_SECRET_0123456789",
            "hms_test_secret_0123456789 ",
            "hms_test_secret_0123456788",
        ] {
            assert!(!s.header_matches(bad.as_bytes()), "accepted {bad:?}");
        }
    }

    #[test]
    fn rotation_accepts_current_and_previous_for_both_methods() {
        let v = verifier(AuthMode::Either);
        for sig in [HMS_SIG, PREV_SIG] {
            let h = headers(&[(SIGNATURE_HEADER, sig)]);
            assert_eq!(v.check(&h, HMS_BODY), Ok(AuthMethod::Signature));
        }
        for secret in [HMS_SECRET, PREV_SECRET] {
            let h = headers(&[(DEFAULT_SECRET_HEADER, secret)]);
            assert_eq!(v.check(&h, HMS_BODY), Ok(AuthMethod::Header));
        }
        let h = headers(&[(DEFAULT_SECRET_HEADER, "retired-secret")]);
        assert_eq!(v.check(&h, HMS_BODY), Err(Error::InvalidCredentials));
    }

    #[test]
    fn modes_restrict_the_accepted_method() {
        let sig = headers(&[(SIGNATURE_HEADER, HMS_SIG)]);
        let hdr = headers(&[(DEFAULT_SECRET_HEADER, HMS_SECRET)]);
        let sig_only = verifier(AuthMode::Signature);
        assert_eq!(sig_only.check(&sig, HMS_BODY), Ok(AuthMethod::Signature));
        assert_eq!(
            sig_only.check(&hdr, HMS_BODY),
            Err(Error::MissingCredentials)
        );
        let hdr_only = verifier(AuthMode::Header);
        assert_eq!(hdr_only.check(&hdr, HMS_BODY), Ok(AuthMethod::Header));
        assert_eq!(
            hdr_only.check(&sig, HMS_BODY),
            Err(Error::MissingCredentials)
        );
    }

    #[test]
    fn either_mode_falls_back_to_the_header() {
        let v = verifier(AuthMode::Either);
        let h = headers(&[
            (SIGNATURE_HEADER, "deadbeef"),
            (DEFAULT_SECRET_HEADER, HMS_SECRET),
        ]);
        assert_eq!(v.check(&h, HMS_BODY), Ok(AuthMethod::Header));
        let h = headers(&[(SIGNATURE_HEADER, "deadbeef"), (DEFAULT_SECRET_HEADER, "x")]);
        assert_eq!(v.check(&h, HMS_BODY), Err(Error::InvalidCredentials));
        assert_eq!(v.check(&[], HMS_BODY), Err(Error::MissingCredentials));
    }

    #[test]
    fn custom_header_name_is_used() {
        let v = Verifier::new(
            AuthMode::Header,
            "x-hms-secret".into(),
            vec![Secret::new(HMS_SECRET)],
        );
        let h = headers(&[("x-hms-secret", HMS_SECRET)]);
        assert_eq!(v.check(&h, b""), Ok(AuthMethod::Header));
        let h = headers(&[(DEFAULT_SECRET_HEADER, HMS_SECRET)]);
        assert_eq!(v.check(&h, b""), Err(Error::MissingCredentials));
    }

    #[test]
    fn auth_mode_parsing() {
        assert_eq!(AuthMode::parse("Signature"), Some(AuthMode::Signature));
        assert_eq!(AuthMode::parse(" header "), Some(AuthMode::Header));
        assert_eq!(AuthMode::parse("EITHER"), Some(AuthMode::Either));
        assert_eq!(AuthMode::parse("both"), None);
        assert_eq!(AuthMode::parse(""), None);
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let text = format!("{:?}", verifier(AuthMode::Either));
        assert!(!text.contains(HMS_SECRET));
        assert!(!text.contains(PREV_SECRET));
    }
}
