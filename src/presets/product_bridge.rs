//! ProductBridge: the key travels as `api_key` in the JSON body of every POST, never in
//! a header, query or path; one generic 401 `invalid api_key` for a missing, unknown,
//! revoked or expired key and for a key of the wrong kind. Its MCP surface takes
//! `Authorization: Bearer` instead.

use crate::credentials::KeySources;
use crate::rejection::ErrorStyle;

/// The `api_key` field of a JSON body, and nothing else.
pub fn key_sources() -> KeySources {
    KeySources::json_body()
}

/// The MCP surface's source: `Authorization: Bearer` only.
pub fn mcp_key_sources() -> KeySources {
    KeySources::bearer()
}

/// One generic 401 `invalid api_key` for a missing, unknown, revoked or expired key,
/// and for a key of the wrong kind (a missing scope, a wrong environment).
pub fn error_style() -> ErrorStyle {
    ErrorStyle::product_bridge()
}
