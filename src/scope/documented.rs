//! The scope models documented by the source pages in `shared/seeds/`.

use super::builder::ScopeModelBuilder;
use super::model::ScopeModel;

/// Performance Blocks' resources and their actions, in the order of the documented
/// table.
const PERFORMANCE_BLOCKS: &[(&str, &[&str])] = &[
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

/// Every documented Performance Blocks scope, in table order.
fn performance_blocks_scopes() -> impl Iterator<Item = String> {
    PERFORMANCE_BLOCKS.iter().flat_map(|(resource, actions)| {
        actions
            .iter()
            .map(move |action| format!("{resource}:{action}"))
    })
}

/// The documented part of both Performance Blocks models. Presets are spelled out
/// rather than written as patterns, so the demo's extra scopes stay out of them.
fn performance_blocks_builder() -> ScopeModelBuilder {
    let builder = PERFORMANCE_BLOCKS
        .iter()
        .fold(ScopeModel::builder(), |builder, (resource, actions)| {
            builder.resource(*resource, actions.iter().copied())
        });
    builder
        .action_implies("write", "read")
        .granted_to_all(["session:read"])
        .preset(
            "Read-only",
            performance_blocks_scopes().filter(|s| s.ends_with(":read")),
        )
        .preset(
            "HRIS integration",
            ["employees:read", "employees:write", "webhooks:write"],
        )
        .preset("Full access", performance_blocks_scopes())
}

impl ScopeModel {
    /// The Performance Blocks API's scopes (source page `000`).
    ///
    /// - `resource:action` scopes, in the order of the documented table:
    ///   `employees`, `observations`, `summaries`, `team_summaries`,
    ///   `conversations`, `objectives`, `assignments`, `review_items`,
    ///   `notifications`, `preferences` and `webhooks` with `read` and `write`;
    ///   `search:read` and `session:read` alone.
    /// - `write` implies `read` for the same resource; `read` implies nothing.
    /// - `session:read` is [granted to every key](Self::granted_to_all).
    /// - There is no super-scope: no scope implies another resource's scopes, so full
    ///   access means listing every scope.
    /// - Presets: `Read-only` (every `:read` scope), `HRIS integration`
    ///   (`employees:read`, `employees:write`, `webhooks:write`) and `Full access`
    ///   (every documented scope).
    /// - No [creation defaults](Self::creation_defaults): the page has the creator
    ///   pick scopes or a preset.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = ScopeModel::performance_blocks();
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
    pub fn performance_blocks() -> Self {
        performance_blocks_builder()
            .build()
            .expect("the documented Performance Blocks model is valid")
    }

    /// [`performance_blocks`](Self::performance_blocks) plus the scopes the demo
    /// server's own endpoints need, declared after the documented ones:
    ///
    /// - `api_keys:read` and `api_keys:write` (listing, creating and revoking keys;
    ///   `write` implies `read` here too),
    /// - `audit_log:read` (reading the audit log),
    /// - `public_api`, a bare scope for the demo's public endpoints.
    ///
    /// Nothing implies them and they are in no preset: the presets are exactly the
    /// documented ones, so `Full access` does not include key administration.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = ScopeModel::performance_blocks_demo();
    /// assert!(model.grants(["api_keys:write"]).contains("api_keys:read"));
    /// assert!(!model.preset("Full access").unwrap().iter().any(|s| s.starts_with("api_keys")));
    /// ```
    ///
    /// # Panics
    ///
    /// Never: the model is fixed, and a unit test builds it.
    pub fn performance_blocks_demo() -> Self {
        performance_blocks_builder()
            .resource("api_keys", ["read", "write"])
            .scope("audit_log:read")
            .scope("public_api")
            .build()
            .expect("the Performance Blocks demo model is valid")
    }

    /// The workspace API's scopes (source page `001`): `read:all`, `write:all` and
    /// `admin`, where `admin` implies `read:all` and `write:all` ("you don't need to
    /// stack scopes").
    ///
    /// The page does not say that `write:all` includes reading, so it does not imply
    /// `read:all`; add `.implies("write:all", ["read:all"])` to a custom model if
    /// yours does. Nothing implies `admin`. No defaults, no presets.
    ///
    /// To make `read:all` an umbrella over resource scopes, build a model with
    /// [`ScopeModelBuilder::implies`] and a pattern:
    /// `.implies("read:all", ["*:read"])`.
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = ScopeModel::workspace();
    /// assert!(model.grants(["admin"]).contains("write:all"));
    /// assert!(!model.grants(["write:all"]).contains("admin"));
    /// ```
    ///
    /// # Panics
    ///
    /// Never: the model is fixed, and a unit test builds it.
    pub fn workspace() -> Self {
        Self::builder()
            .scopes(["read:all", "write:all", "admin"])
            .implies("admin", ["read:all", "write:all"])
            .build()
            .expect("the documented workspace model is valid")
    }

    /// PromptFloe's scopes (source page `004`): `read`, `build`, `deploy`, `admin` and
    /// `webhook:write`.
    ///
    /// New keys get `read` and `build` by default ([`creation_defaults`]); nothing is
    /// [granted to every key](Self::granted_to_all). `admin` needs an explicit opt-in:
    /// no scope implies it. The page does not say that `admin` includes the other
    /// scopes (its row lists only workspace context, custom skills, members and
    /// billing), so here it implies nothing: an admin key that also builds must hold
    /// `build` too. No presets.
    ///
    /// [`creation_defaults`]: Self::creation_defaults
    ///
    /// ```
    /// use tower_api_key::ScopeModel;
    ///
    /// let model = ScopeModel::promptfloe();
    /// assert_eq!(model.creation_defaults(), ["read", "build"]);
    /// assert_eq!(model.grants(["admin"]).iter().collect::<Vec<_>>(), ["admin"]);
    /// ```
    ///
    /// # Panics
    ///
    /// Never: the model is fixed, and a unit test builds it.
    pub fn promptfloe() -> Self {
        Self::builder()
            .scopes(["read", "build", "deploy", "admin", "webhook:write"])
            .creation_defaults(["read", "build"])
            .build()
            .expect("the documented PromptFloe model is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_models_build() {
        assert_eq!(ScopeModel::performance_blocks().scopes().count(), 24);
        assert_eq!(ScopeModel::performance_blocks_demo().scopes().count(), 28);
        assert_eq!(ScopeModel::workspace().scopes().count(), 3);
        assert_eq!(ScopeModel::promptfloe().scopes().count(), 5);
    }

    #[test]
    fn demo_adds_scopes_after_the_documented_ones() {
        let demo = ScopeModel::performance_blocks_demo();
        let documented = ScopeModel::performance_blocks();
        let scopes: Vec<_> = demo.scopes().collect();
        assert_eq!(scopes[..24], documented.scopes().collect::<Vec<_>>()[..]);
        assert_eq!(
            scopes[24..],
            [
                "api_keys:read",
                "api_keys:write",
                "audit_log:read",
                "public_api"
            ]
        );
        for (name, scopes) in documented.presets() {
            assert_eq!(demo.preset(name), Some(scopes));
        }
        assert_eq!(demo.granted_to_all(), ["session:read"]);
        assert_eq!(
            demo.grants(["public_api"]).iter().collect::<Vec<_>>(),
            ["session:read", "public_api"]
        );
    }
}
