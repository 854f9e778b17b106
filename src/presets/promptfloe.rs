//! PromptFloe: `pf_live_…`, `pf_test_…` and `pf_dev_…` keys sent as
//! `Authorization: Bearer`, default scopes `read` + `build` with `admin` only by
//! explicit opt-in, graceful rotation (the superseded key valid 24 hours, shown as
//! deprecated), and the error codes `invalid_key`, `expired_key`, `missing_scope` and
//! `quota_exceeded`, each with `X-Request-Id`.

use crate::credentials::KeySources;
use crate::key::KeyFormat;
use crate::rejection::ErrorStyle;
use crate::scope::ScopeModel;

/// The scopes: `read`, `build`, `deploy`, `admin` and `webhook:write`.
///
/// New keys get `read` and `build` by default
/// ([`creation_defaults`](ScopeModel::creation_defaults)); nothing is granted to every
/// key. `admin` needs an explicit opt-in: no scope implies it. The page does not say
/// that `admin` includes the other scopes (its row lists only workspace context, custom
/// skills, members and billing), so here it implies nothing: an admin key that also
/// builds must hold `build` too. No presets.
///
/// ```
/// use tower_api_key::presets::promptfloe;
///
/// let model = promptfloe::scope_model();
/// assert_eq!(model.creation_defaults(), ["read", "build"]);
/// assert_eq!(model.grants(["admin"]).iter().collect::<Vec<_>>(), ["admin"]);
/// ```
///
/// # Panics
///
/// Never: the model is fixed, and a unit test builds it.
pub fn scope_model() -> ScopeModel {
    ScopeModel::builder()
        .scopes(["read", "build", "deploy", "admin", "webhook:write"])
        .creation_defaults(["read", "build"])
        .build()
        .expect("the documented PromptFloe model is valid")
}

/// `pf_live_…`, `pf_test_…` and `pf_dev_…` keys.
///
/// # Panics
///
/// Never: the format is fixed, and a unit test builds it.
pub fn key_format() -> KeyFormat {
    KeyFormat::new("pf")
        .and_then(|f| f.with_environments(["live", "test", "dev"]))
        .expect("the PromptFloe key format is valid")
}

/// `Authorization: Bearer` only.
pub fn key_sources() -> KeySources {
    KeySources::bearer()
}

/// `invalid_key`, `expired_key`, `missing_scope` and `quota_exceeded`; every refusal
/// carries `X-Request-Id` when the request had one.
pub fn error_style() -> ErrorStyle {
    ErrorStyle::prompt_floe()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixed_settings_build() {
        assert_eq!(super::scope_model().scopes().count(), 5);
        let minted = super::key_format().generate(Some("dev")).unwrap();
        assert!(minted.key.expose_secret().starts_with("pf_dev_"));
    }
}
