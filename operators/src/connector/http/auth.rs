//! Bearer-token check for the ingest endpoint.
//!
//! The token is compared in constant time (`subtle`), so response timing does not reveal how
//! many leading bytes of a guess were right. The length of the token is not secret.

use std::fmt;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// A secret bearer token. Its `Debug` output is redacted so it does not end up in logs.
///
/// ```
/// use weir_operators::connector::http::BearerToken;
/// let token = BearerToken::new("s3cret");
/// assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token; clients send it as `Authorization: Bearer <token>`.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, e.g. to configure a client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>` (scheme case-insensitive).
    pub(crate) fn authorizes(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() < scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return false;
        }
        let presented = value[scheme.len()..].trim_ascii();
        bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(value).expect("test header is valid"),
        );
        h
    }

    #[test]
    fn accepts_only_the_exact_token_under_the_bearer_scheme() {
        let token = BearerToken::new("abc123");
        assert!(token.authorizes(&headers("Bearer abc123")));
        assert!(token.authorizes(&headers("bearer abc123")));
        assert!(!token.authorizes(&headers("Bearer abc124")));
        assert!(!token.authorizes(&headers("Bearer abc12")));
        assert!(!token.authorizes(&headers("Bearer abc1234")));
        assert!(!token.authorizes(&headers("Basic abc123")));
        assert!(!token.authorizes(&headers("Bearer")));
        assert!(!token.authorizes(&HeaderMap::new()));
    }
}
