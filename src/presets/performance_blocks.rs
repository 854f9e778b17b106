//! The Performance Blocks API: `Authorization: Bearer pb_live_…` (or `pb_test_…`) keys,
//! live and test data kept apart, `resource:action` scopes where `write` implies `read`,
//! `session:read` granted to every key, no super-scope, three named presets, and one
//! 401 `authentication_required` for every authentication failure.

use crate::credentials::KeySources;
use crate::key::KeyFormat;
use crate::rejection::ErrorStyle;
use crate::scope::{ScopeModel, ScopeModelBuilder};

/// The resources and their actions, in the order of the documented table.
const RESOURCES: &[(&str, &[&str])] = &[
    ("employees", &["read", "write"]),
    ("observations", &["read", "write"]),
    ("summaries", &["read", "write"]),
    ("team_summaries", &["read", "write"]),
    ("conversations", &["read", "write"]),
    ("objectives", &["read", "write"]),
    ("assignments", &["read", "write"]),
    ("review_items", &["read", "write"]),
    ("notifications", &["read", "write"]),
    ("preferences", &["read", "write"]),
    ("search", &["read"]),
    ("webhooks", &["read", "write"]),
    ("session", &["read"]),
];

/// Every documented scope, in table order.
fn documented_scopes() -> impl Iterator<Item = String> {
    RESOURCES.iter().flat_map(|(resource, actions)| {
        actions
            .iter()
            .map(move |action| format!("{resource}:{action}"))
    })
}

/// The scopes:
///
/// - `resource:action` scopes, in the order of the documented table: `employees`,
///   `observations`, `summaries`, `team_summaries`, `conversations`, `objectives`,
///   `assignments`, `review_items`, `notifications`, `preferences` and `webhooks`
///   with `read` and `write`; `search:read` and `session:read` alone.
/// - `write` implies `read` for the same resource; `read` implies nothing.
/// - `session:read` is [granted to every key](ScopeModel::granted_to_all).
/// - There is no super-scope: no scope implies another resource's scopes, so full
///   access means listing every scope.
/// - Presets: `Read-only` (every `:read` scope), `HRIS integration`
///   (`employees:read`, `employees:write`, `webhooks:write`) and `Full access` (every
///   documented scope).
/// - No [creation defaults](ScopeModel::creation_defaults): the creator picks scopes
///   or a preset.
///
/// ```
/// use tower_api_key::presets::performance_blocks;
///
/// let model = performance_blocks::scope_model();
/// let grants = model.grants(["employees:write"]);
/// assert_eq!(
///     grants.iter().collect::<Vec<_>>(),
///     ["employees:read", "employees:write", "session:read"]
/// );
/// assert_eq!(
///     model.preset("HRIS integration").unwrap(),
///     ["employees:read", "employees:write", "webhooks:write"]
/// );
/// ```
///
/// # Panics
///
/// Never: the model is fixed, and a unit test builds it.
pub fn scope_model() -> ScopeModel {
    scope_model_builder()
        .build()
        .expect("the documented Performance Blocks model is valid")
}

/// [`scope_model`] still open: add an application's own scopes after the documented
/// ones (the presets stay exactly the documented ones, spelled out rather than written
/// as patterns, so added scopes stay out of them).
///
/// ```
/// use tower_api_key::presets::performance_blocks;
///
/// let model = performance_blocks::scope_model_builder()
///     .resource("api_keys", ["read", "write"])
///     .build()?;
/// assert!(model.grants(["api_keys:write"]).contains("api_keys:read"));
/// assert!(!model.preset("Full access").unwrap().iter().any(|s| s.starts_with("api_keys")));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
pub fn scope_model_builder() -> ScopeModelBuilder {
    let builder = RESOURCES
        .iter()
        .fold(ScopeModel::builder(), |builder, (resource, actions)| {
            builder.resource(*resource, actions.iter().copied())
        });
    builder
        .action_implies("write", "read")
        .granted_to_all(["session:read"])
        .preset(
            "Read-only",
            documented_scopes().filter(|s| s.ends_with(":read")),
        )
        .preset(
            "HRIS integration",
            ["employees:read", "employees:write", "webhooks:write"],
        )
        .preset("Full access", documented_scopes())
}

/// `pb_live_…` and `pb_test_…` keys.
///
/// # Panics
///
/// Never: the format is fixed, and a unit test builds it.
pub fn key_format() -> KeyFormat {
    KeyFormat::new("pb")
        .and_then(|f| f.with_environments(["live", "test"]))
        .expect("the Performance Blocks key format is valid")
}

/// `Authorization: Bearer` only.
pub fn key_sources() -> KeySources {
    KeySources::bearer()
}

/// One 401 `authentication_required` ("API key is missing or invalid") for every
/// authentication failure, so nothing reveals whether a key exists; 403
/// `permission_denied` naming the missing scope. This is also the crate's default.
pub fn error_style() -> ErrorStyle {
    ErrorStyle::envelope()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_settings_build() {
        assert_eq!(scope_model().scopes().count(), 24);
        let minted = key_format().generate(Some("test")).unwrap();
        assert!(minted.key.expose_secret().starts_with("pb_test_"));
    }
}
