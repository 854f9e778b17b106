//! Where a key is read from: `Authorization: Bearer`, a named header, a query
//! parameter, or a top-level field of a JSON body.
//!
//! ```
//! use tower_api_key::credentials::KeySources;
//!
//! // Performance Blocks and PgBeam: `Authorization: Bearer` or `X-API-Key`.
//! let headers = KeySources::bearer_or_header();
//! // ProductBridge: `{"api_key": "…"}` in the body, and nothing else.
//! let body = KeySources::json_body().with_body_limit(64 * 1024)?;
//! # let _ = (headers, body);
//! # Ok::<(), tower_api_key::ConfigError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::Uri;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::error::ConfigError;
use crate::rejection::RejectionKind;

/// The default limit for buffering a JSON body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default time a JSON body has to arrive in full: 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured key sources of one layer, tried together: a key sent by more than
/// one of them is refused with 400 `invalid_request` (RFC 6750 §2).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySources {
    pub(crate) bearer: bool,
    pub(crate) header: Option<HeaderName>,
    pub(crate) query: Option<String>,
    pub(crate) body: Option<BodyField>,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct BodyField {
    pub(crate) field: String,
    pub(crate) limit: usize,
    pub(crate) timeout: Duration,
}

impl KeySources {
    /// Only `Authorization: Bearer <key>`.
    pub fn bearer() -> Self {
        Self {
            bearer: true,
            header: None,
            query: None,
            body: None,
        }
    }

    /// `Authorization: Bearer <key>` or `X-API-Key: <key>`: the default.
    pub fn bearer_or_header() -> Self {
        Self {
            header: Some(HeaderName::from_static("x-api-key")),
            ..Self::bearer()
        }
    }

    /// Only a top-level `api_key` field of a JSON body, buffered up to 1 MiB, which
    /// must arrive within 10 s.
    ///
    /// A layer configured this way ignores `Authorization`, other headers and the
    /// query string completely: a key sent there counts as missing (ProductBridge).
    pub fn json_body() -> Self {
        Self {
            bearer: false,
            header: None,
            query: None,
            body: Some(BodyField {
                field: "api_key".to_owned(),
                limit: DEFAULT_BODY_LIMIT,
                timeout: DEFAULT_BODY_TIMEOUT,
            }),
        }
    }

    /// Reads the key from this header instead of `X-API-Key` (in addition to Bearer,
    /// if enabled).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an invalid header name, for `Authorization` (use Bearer),
    /// or on a body-key configuration.
    pub fn with_header(mut self, name: &str) -> Result<Self, ConfigError> {
        self.no_body("a header")?;
        let name = HeaderName::try_from(name)
            .map_err(|_| ConfigError::new(format!("invalid header name {name:?}")))?;
        if name == header::AUTHORIZATION {
            return Err(ConfigError::new(
                "use the Bearer source for the Authorization header",
            ));
        }
        self.header = Some(name);
        Ok(self)
    }

    /// Stops reading a key from a named header.
    pub fn without_header(mut self) -> Self {
        self.header = None;
        self
    }

    /// Also reads the key from a query parameter. Opt-in only: RFC 6750 §2.3
    /// discourages it, because URLs end up in logs.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty name or on a body-key configuration.
    pub fn with_query(mut self, param: &str) -> Result<Self, ConfigError> {
        self.no_body("a query parameter")?;
        if param.is_empty()
            || !param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ConfigError::new(format!(
                "invalid query parameter name {param:?}"
            )));
        }
        self.query = Some(param.to_owned());
        Ok(self)
    }

    /// Reads the key from this top-level JSON field instead of `api_key`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an empty name, or when the sources are not a body source.
    pub fn with_body_field(mut self, field: &str) -> Result<Self, ConfigError> {
        let body = self
            .body
            .as_mut()
            .ok_or_else(|| ConfigError::new("with_body_field needs KeySources::json_body()"))?;
        if field.is_empty() {
            return Err(ConfigError::new("the JSON body field name is empty"));
        }
        field.clone_into(&mut body.field);
        Ok(self)
    }

    /// The largest body buffered to find the key (1 MiB by default). Larger bodies
    /// are refused with 413 before the inner service sees them.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero limit, or when the sources are not a body source.
    pub fn with_body_limit(mut self, limit: usize) -> Result<Self, ConfigError> {
        let body = self
            .body
            .as_mut()
            .ok_or_else(|| ConfigError::new("with_body_limit needs KeySources::json_body()"))?;
        if limit == 0 {
            return Err(ConfigError::new("the JSON body limit must be non-zero"));
        }
        body.limit = limit;
        Ok(self)
    }

    /// How long the whole body may take to arrive (10 s by default), counted from
    /// when the layer starts reading it. A body still incomplete then is refused with
    /// 408 `request_timeout` and the connection's body is dropped, so a client that
    /// stops sending half-way holds no buffer. Measured with tokio's timer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a zero timeout or one over ten minutes, or when the sources
    /// are not a body source.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        let body = self
            .body
            .as_mut()
            .ok_or_else(|| ConfigError::new("with_body_timeout needs KeySources::json_body()"))?;
        if timeout.is_zero() || timeout > Duration::from_secs(600) {
            return Err(ConfigError::new(format!(
                "the JSON body timeout {timeout:?} must be between 1 ns and ten minutes"
            )));
        }
        body.timeout = timeout;
        Ok(self)
    }

    fn no_body(&self, what: &str) -> Result<(), ConfigError> {
        if self.body.is_some() {
            Err(ConfigError::new(format!(
                "a JSON-body key source cannot also read {what}: body keys ignore every other transport"
            )))
        } else {
            Ok(())
        }
    }

    /// `true` when the key is read from the JSON body.
    pub fn reads_body(&self) -> bool {
        self.body.is_some()
    }

    /// Reads the key from the request head (everything but the body).
    ///
    /// `Ok(None)` means no credential was presented.
    pub(crate) fn read_head<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Option<&'a [u8]>, RejectionKind> {
        // One pass over the headers finds both: for the handful of headers a request
        // carries this is cheaper than two hashed lookups.
        let (mut authorization, mut authorizations) = (None, 0_u32);
        let (mut named, mut nameds) = (None, 0_u32);
        // A query-only source skips the walk.
        if self.bearer || self.header.is_some() {
            for (name, value) in headers {
                if self.bearer && name == header::AUTHORIZATION {
                    authorization = Some(value);
                    authorizations += 1;
                } else if self.header.as_ref() == Some(name) {
                    named = Some(value);
                    nameds += 1;
                }
            }
        }
        let mut found = None;
        let mut methods = 0;
        if let Some(value) = authorization {
            if authorizations > 1 {
                return Err(RejectionKind::InvalidRequest {
                    reason: "several Authorization headers",
                });
            }
            found = Some(bearer_token(value)?);
            methods += 1;
        }
        if let Some(value) = named {
            if nameds > 1 {
                return Err(RejectionKind::InvalidRequest {
                    reason: "the key header was sent more than once",
                });
            }
            // Handed over as bytes: the key parser refuses anything outside its
            // alphabet, non-ASCII bytes included.
            found = Some(value.as_bytes());
            methods += 1;
        }
        if let Some(param) = &self.query {
            if let Some(value) = query_param(uri, param)? {
                found = Some(value.as_bytes());
                methods += 1;
            }
        }
        if methods > 1 {
            return Err(RejectionKind::InvalidRequest {
                reason: "the API key was sent by more than one method",
            });
        }
        Ok(found)
    }

    /// Removes the credential from the request head (Kong's `hide_credentials`).
    pub(crate) fn hide_in_head(&self, headers: &mut HeaderMap, uri: &mut Uri) {
        if self.bearer {
            headers.remove(header::AUTHORIZATION);
        }
        if let Some(name) = &self.header {
            headers.remove(name);
        }
        if let Some(param) = &self.query {
            if let Some(stripped) = strip_query_param(uri, param) {
                *uri = stripped;
            }
        }
    }
}

impl Default for KeySources {
    fn default() -> Self {
        Self::bearer_or_header()
    }
}

impl fmt::Debug for KeySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KeySources");
        d.field("bearer", &self.bearer)
            .field("header", &self.header)
            .field("query", &self.query);
        if let Some(body) = &self.body {
            d.field("body_field", &body.field)
                .field("body_limit", &body.limit)
                .field("body_timeout", &body.timeout);
        }
        d.finish()
    }
}

/// The Bearer token in an `Authorization` header value.
///
/// The scheme is matched case-insensitively (RFC 9110 §11.1). Other schemes
/// (`Token …`, `ApiKey …`, `Basic …`) and an empty token are malformed credentials
/// (401). The token itself is handed to the key parser as it stands: every key it
/// accepts is a `b64token` (RFC 6750 §2.1) of letters, digits, `_` and `-`, so a token
/// outside that grammar (spaces, quotes, bytes that are not visible ASCII) is refused
/// there as malformed, with no second pass over it here. (Several `Authorization`
/// headers are an invalid request (400), refused by the caller.)
fn bearer_token(value: &http::HeaderValue) -> Result<&[u8], RejectionKind> {
    // `Bearer` in any case, then one or more spaces, then the token.
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at(bytes.len().min(BEARER.len()));
    if !scheme.eq_ignore_ascii_case(BEARER) {
        return Err(RejectionKind::Malformed);
    }
    let start = rest
        .iter()
        .position(|&b| b != b' ')
        .ok_or(RejectionKind::Malformed)?;
    Ok(&rest[start..])
}

/// The scheme and the space after it.
const BEARER: &[u8] = b"bearer ";

fn query_param<'a>(uri: &'a Uri, param: &str) -> Result<Option<&'a str>, RejectionKind> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == param {
            if found.is_some() {
                return Err(RejectionKind::InvalidRequest {
                    reason: "the key query parameter was sent more than once",
                });
            }
            found = Some(value);
        }
    }
    Ok(found)
}

fn strip_query_param(uri: &Uri, param: &str) -> Option<Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(n, _)| n) != param)
        .collect();
    let path = uri.path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

/// What a JSON body holds in the key field.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyKey<'a> {
    /// No such field.
    Absent,
    /// The field holds a string.
    Present(Cow<'a, str>),
    /// The field holds something else (a number, `null`, an object).
    NotAString,
}

/// Finds a top-level string field in a JSON document without deserialising anything
/// else (other values are skipped with [`IgnoredAny`]). The whole document must be
/// valid JSON and an object; a field given twice is ambiguous.
pub(crate) fn body_key<'a>(body: &'a [u8], field: &str) -> Result<BodyKey<'a>, RejectionKind> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found =
        FindField { field }
            .deserialize(&mut de)
            .map_err(|e| RejectionKind::InvalidRequest {
                reason: if e.is_data() {
                    "the request body must be a JSON object with at most one key field"
                } else {
                    "the request body is not valid JSON"
                },
            })?;
    de.end().map_err(|_| RejectionKind::InvalidRequest {
        reason: "the request body is not valid JSON",
    })?;
    Ok(found)
}

struct FindField<'f> {
    field: &'f str,
}

impl<'de> DeserializeSeed<'de> for FindField<'_> {
    type Value = BodyKey<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindField<'_> {
    type Value = BodyKey<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = BodyKey::Absent;
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            if name == self.field {
                if found != BodyKey::Absent {
                    return Err(de::Error::custom("duplicate key field"));
                }
                found = match map.next_value::<MaybeStr<'de>>()? {
                    MaybeStr::Str(s) => BodyKey::Present(s),
                    MaybeStr::Other => BodyKey::NotAString,
                };
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

enum MaybeStr<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de> de::Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeStr::Other)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Removes a top-level field from a JSON object document, for `hide_credentials` on a
/// body source. This re-serialises the document, so it runs only when asked for.
pub(crate) fn strip_body_field(body: &[u8], field: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).ok()?;
    value.remove(field)?;
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn read(
        sources: &KeySources,
        pairs: &[(&str, &[u8])],
        uri: &str,
    ) -> Result<Option<String>, RejectionKind> {
        let h = head(pairs);
        let uri: Uri = uri.parse().unwrap();
        sources
            .read_head(&h, &uri)
            .map(|k| k.map(|k| String::from_utf8_lossy(k).into_owned()))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let s = KeySources::bearer();
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let v = format!("{scheme} abc_123");
            assert_eq!(
                read(&s, &[("authorization", v.as_bytes())], "/")
                    .unwrap()
                    .as_deref(),
                Some("abc_123")
            );
        }
    }

    #[test]
    fn other_schemes_and_empty_tokens_are_malformed() {
        let s = KeySources::bearer();
        for v in [
            "Token abc",
            "ApiKey abc",
            "Basic YTpi",
            "Bearer",
            "Bearer ",
            "Bearer    ",
            "abc",
        ] {
            assert_eq!(
                read(&s, &[("authorization", v.as_bytes())], "/"),
                Err(RejectionKind::Malformed),
                "{v}"
            );
        }
    }

    #[test]
    fn the_token_reaches_the_key_parser_as_it_stands() {
        // The parser refuses these as malformed (`tests/layer.rs`); no key format
        // accepts a byte outside the `b64token` grammar.
        let s = KeySources::bearer();
        for (value, token) in [
            (&b"Bearer a b"[..], &b"a b"[..]),
            (b"Bearer a\"b", b"a\"b"),
            (b"Bearer  \xff\xfe", b"\xff\xfe"),
        ] {
            let h = head(&[("authorization", value)]);
            let uri: Uri = "/".parse().unwrap();
            assert_eq!(s.read_head(&h, &uri), Ok(Some(token)));
        }
    }

    #[test]
    fn several_methods_or_headers_are_invalid_requests() {
        let s = KeySources::bearer_or_header()
            .with_query("api_key")
            .unwrap();
        let invalid = |r: Result<Option<String>, RejectionKind>| {
            matches!(r, Err(RejectionKind::InvalidRequest { .. }))
        };
        assert!(invalid(read(
            &s,
            &[("authorization", b"Bearer a"), ("x-api-key", b"a")],
            "/"
        )));
        assert!(invalid(read(
            &s,
            &[("authorization", b"Bearer a")],
            "/?api_key=a"
        )));
        assert!(invalid(read(
            &s,
            &[
                ("authorization", b"Bearer a"),
                ("authorization", b"Bearer b")
            ],
            "/"
        )));
        assert!(invalid(read(
            &s,
            &[("x-api-key", b"a"), ("x-api-key", b"b")],
            "/"
        )));
        assert!(invalid(read(&s, &[], "/?api_key=a&api_key=b")));
        assert_eq!(
            read(&s, &[], "/?x=1&api_key=k").unwrap().as_deref(),
            Some("k")
        );
        assert_eq!(read(&s, &[], "/?x=1").unwrap(), None);
    }

    #[test]
    fn body_sources_ignore_the_head() {
        let s = KeySources::json_body();
        assert_eq!(
            read(
                &s,
                &[("authorization", b"Bearer a"), ("x-api-key", b"a")],
                "/?api_key=a"
            )
            .unwrap(),
            None
        );
        assert!(KeySources::json_body().with_header("x-key").is_err());
        assert!(KeySources::json_body().with_query("k").is_err());
        assert!(KeySources::bearer().with_body_limit(10).is_err());
        assert!(KeySources::json_body().with_body_limit(0).is_err());
        assert!(KeySources::bearer()
            .with_body_timeout(Duration::from_secs(1))
            .is_err());
        assert!(KeySources::json_body()
            .with_body_timeout(Duration::ZERO)
            .is_err());
        assert!(KeySources::json_body()
            .with_body_timeout(Duration::from_secs(5))
            .is_ok());
        assert!(KeySources::bearer().with_header("authorization").is_err());
        assert!(KeySources::bearer().with_header("bad header").is_err());
    }

    #[test]
    fn json_field_is_found_without_full_deserialisation() {
        assert_eq!(
            body_key(
                br#"{"limit":25,"nested":{"api_key":"no"},"api_key":"k"}"#,
                "api_key"
            )
            .unwrap(),
            BodyKey::Present(Cow::Borrowed("k"))
        );
        assert_eq!(
            body_key(br#"{"limit":25}"#, "api_key").unwrap(),
            BodyKey::Absent
        );
        assert_eq!(
            body_key(br#"{"api_key":12}"#, "api_key").unwrap(),
            BodyKey::NotAString
        );
        assert_eq!(
            body_key(br#"{"api_key":null}"#, "api_key").unwrap(),
            BodyKey::NotAString
        );
        assert_eq!(
            body_key(br#"{"api_key":["a"]}"#, "api_key").unwrap(),
            BodyKey::NotAString
        );
        assert_eq!(
            body_key(br#"{"api_key":"a\u0062"}"#, "api_key").unwrap(),
            BodyKey::Present(Cow::Owned("ab".into()))
        );
        for bad in [
            &br#"{"api_key":"k""#[..],
            b"",
            b"[1]",
            b"\"k\"",
            br#"{"api_key":"a","api_key":"b"}"#,
            br#"{"a":1} x"#,
        ] {
            assert!(
                matches!(
                    body_key(bad, "api_key"),
                    Err(RejectionKind::InvalidRequest { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hiding_strips_the_query_parameter() {
        let s = KeySources::bearer().with_query("api_key").unwrap();
        let mut h = head(&[("authorization", b"Bearer a"), ("x-other", b"1")]);
        let mut uri: Uri = "/p?a=1&api_key=k&b=2".parse().unwrap();
        s.hide_in_head(&mut h, &mut uri);
        assert_eq!(uri, "/p?a=1&b=2");
        assert!(h.get("authorization").is_none());
        assert!(h.get("x-other").is_some());
        assert_eq!(
            strip_body_field(br#"{"api_key":"k","x":1}"#, "api_key").unwrap(),
            br#"{"x":1}"#
        );
    }
}
