//! A workspace API: `read:all`, `write:all` and `admin` scopes, where `admin`
//! encompasses the others ("you don't need to stack scopes"), and 401 / 403 / 429 with
//! `Retry-After`.

use crate::scope::ScopeModel;

/// The scopes: `read:all`, `write:all` and `admin`, where `admin` implies `read:all`
/// and `write:all`.
///
/// The page does not say that `write:all` includes reading, so it does not imply
/// `read:all`; add `.implies("write:all", ["read:all"])` to a model of your own if
/// yours does. Nothing implies `admin`. No defaults, no presets. To make `read:all` an
/// umbrella over resource scopes, build a model with a pattern:
/// `.implies("read:all", ["*:read"])`.
///
/// ```
/// use tower_api_key::presets::workspace;
///
/// let model = workspace::scope_model();
/// assert!(model.grants(["admin"]).contains("write:all"));
/// assert!(!model.grants(["write:all"]).contains("admin"));
/// ```
///
/// # Panics
///
/// Never: the model is fixed, and a unit test builds it.
pub fn scope_model() -> ScopeModel {
    ScopeModel::builder()
        .scopes(["read:all", "write:all", "admin"])
        .implies("admin", ["read:all", "write:all"])
        .build()
        .expect("the documented workspace model is valid")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_builds() {
        assert_eq!(super::scope_model().scopes().count(), 3);
    }
}
