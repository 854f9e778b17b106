//! [`Grants`]: what one key may do, closed under the model's implications.

use std::fmt;
use std::sync::Arc;

use super::bits::{self, Bits};
use super::model::{Inner, ScopeModel};

/// The resolved, implication-closed grants of one key, from
/// [`ScopeModel::grants`].
///
/// A small bitset plus a handle on its model: cloning is cheap and, for models of up
/// to 128 scopes, allocation-free. `Debug` lists the scope names.
///
/// ```
/// use tower_api_key::ScopeModel;
///
/// let model = tower_api_key::presets::workspace::scope_model();
/// let grants = model.grants(["admin"]);
/// assert_eq!(grants.iter().collect::<Vec<_>>(), ["read:all", "write:all", "admin"]);
/// assert_eq!(format!("{grants:?}"), r#"Grants(["read:all", "write:all", "admin"])"#);
/// ```
#[derive(Clone)]
pub struct Grants {
    model: Arc<Inner>,
    bits: Bits,
}

impl Grants {
    pub(super) fn new(model: Arc<Inner>, bits: Bits) -> Self {
        Self { model, bits }
    }

    pub(super) fn bits(&self) -> &[u64] {
        self.bits.as_slice()
    }

    pub(super) fn model(&self) -> &Arc<Inner> {
        &self.model
    }

    /// Whether the key holds `scope`, directly or by implication.
    pub fn contains(&self, scope: &str) -> bool {
        self.model
            .index_of(scope)
            .is_some_and(|index| bits::contains(self.bits(), index))
    }

    /// The scopes held, in the model's declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        bits::ones(self.bits()).map(|index| self.model.name(index))
    }

    /// How many scopes are held.
    pub fn len(&self) -> usize {
        self.bits().iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether no scope at all is held (never the case in a model with scopes
    /// [granted to every key](ScopeModel::granted_to_all)).
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// Whether these grants were resolved by `model` (or a clone of it).
    pub fn belongs_to(&self, model: &ScopeModel) -> bool {
        Arc::ptr_eq(&self.model, model.inner())
    }
}

/// Equal when resolved by the same model and holding the same scopes.
impl PartialEq for Grants {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model) && self.bits == other.bits
    }
}

impl Eq for Grants {}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Names<'a>(&'a Grants);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.iter()).finish()
            }
        }
        f.debug_tuple("Grants").field(&Names(self)).finish()
    }
}

// A key's grants under the model.
impl ScopeModel {
    /// Resolves a key's stored scope strings into the closed set of its grants: each
    /// declared scope with everything it implies, transitively, plus the scopes
    /// [granted to every key](Self::granted_to_all).
    ///
    /// Strings that are not declared scopes grant nothing (fail closed): a key stored
    /// with a scope that was later removed from the model simply loses it. Matching is
    /// exact and case-sensitive. This never panics, and allocates nothing for models of
    /// up to 128 scopes.
    pub fn grants<I, S>(&self, scopes: I) -> Grants
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut held = self.inner.base.clone();
        for scope in scopes {
            if let Some(index) = self.inner.index_of(scope.as_ref()) {
                held.union_with(self.inner.closure(index));
            }
        }
        Grants::new(Arc::clone(&self.inner), held)
    }

    /// Whether `held` includes every scope of `wanted`: use it to refuse privilege
    /// escalation when a key creates another key
    /// (`model.covers(&creator, &model.grants(&requested))`).
    ///
    /// Both are closed under implication already, so a key holding `employees:write`
    /// covers a request for `employees:read`. `false` when either comes from another
    /// model.
    pub fn covers(&self, held: &Grants, wanted: &Grants) -> bool {
        held.belongs_to(self)
            && wanted.belongs_to(self)
            && bits::is_subset(wanted.bits(), held.bits())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn contains_iter_len() {
        let model = crate::presets::promptfloe::scope_model();
        let grants = model.grants(["deploy", "read"]);
        assert!(grants.contains("deploy"));
        assert!(grants.contains("read"));
        assert!(!grants.contains("build"));
        assert!(!grants.contains("nope"));
        assert_eq!(grants.iter().collect::<Vec<_>>(), ["read", "deploy"]);
        assert_eq!(grants.len(), 2);
        assert!(!grants.is_empty());
        assert!(model.grants([""; 0]).is_empty());
        assert!(grants.belongs_to(&model));
        assert!(!grants.belongs_to(&crate::presets::promptfloe::scope_model()));
    }

    #[test]
    fn equality_needs_the_same_model() {
        let model = crate::presets::promptfloe::scope_model();
        assert_eq!(
            model.grants(["read"]),
            model.clone().grants(["read", "read"])
        );
        assert_ne!(model.grants(["read"]), model.grants(["build"]));
        assert_ne!(
            model.grants(["read"]),
            crate::presets::promptfloe::scope_model().grants(["read"])
        );
    }
}
