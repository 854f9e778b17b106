//! [`ScopeModel`]: the declared scopes, their implication closures, defaults and
//! presets.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::bits::Bits;
use super::syntax::{check_scope, MAX_SCOPE_LEN};
use crate::error::ConfigError;

/// Everything a built model knows. Shared by the model, its [`Grants`](super::Grants) and its
/// [`Requirement`](super::Requirement)s.
pub(super) struct Inner {
    /// Scope names in declaration order; a scope's index is its bit.
    pub(super) names: Box<[Box<str>]>,
    pub(super) index: HashMap<Box<str>, u16, ahash::RandomState>,
    /// Words per bitset.
    pub(super) words: usize,
    /// `names.len()` bitsets of `words` words: each scope's implication closure.
    pub(super) closures: Box<[u64]>,
    /// The closure of the scopes granted to every key.
    pub(super) base: Bits,
    /// Direct implications, for `Debug`.
    pub(super) implications: Box<[(u16, u16)]>,
    pub(super) granted_to_all: Vec<String>,
    pub(super) creation_defaults: Vec<String>,
    pub(super) presets: Vec<(String, Vec<String>)>,
    pub(super) allow_uppercase: bool,
}

impl Inner {
    /// The index of a declared scope. Over-long input is refused before hashing.
    pub(super) fn index_of(&self, scope: &str) -> Option<usize> {
        if scope.len() > MAX_SCOPE_LEN {
            return None;
        }
        self.index.get(scope).map(|&i| usize::from(i))
    }

    pub(super) fn closure(&self, index: usize) -> &[u64] {
        self.closures
            .get(index * self.words..(index + 1) * self.words)
            .unwrap_or_default()
    }

    pub(super) fn name(&self, index: usize) -> &str {
        self.names.get(index).map_or("", |n| n)
    }
}

/// A set of declared scopes with implication rules, scopes granted to every key,
/// creation defaults and presets.
///
/// Build one with [`ScopeModel::builder`], or take one of the documented products'
/// models from [`presets`](crate::presets).
///
/// Everything is checked and precomputed when the model is built: each scope is
/// interned to a bit, and each scope's implication closure is stored as a bitset, so
/// [`grants`](Self::grants) costs one hash lookup per stored scope and a few word
/// operations, and checking a [`Requirement`](super::Requirement) is pure bit arithmetic.
///
/// Cloning is cheap (one `Arc`). [`Grants`](super::Grants) and [`Requirement`](super::Requirement)s remember the model
/// they came from; mixing models fails closed (see [`Requirement::is_satisfied_by`](super::Requirement::is_satisfied_by)).
///
/// # Example
///
/// ```
/// use tower_api_key::ScopeModel;
///
/// let model = tower_api_key::presets::performance_blocks::scope_model();
/// let grants = model.grants(["observations:write", "no_such_scope"]);
/// assert!(grants.contains("observations:read")); // write implies read
/// assert!(grants.contains("session:read")); // granted to every key
/// assert!(!grants.contains("employees:read"));
///
/// let needed = model.requirement("observations:write OR summaries:write")?;
/// assert!(needed.is_satisfied_by(&grants));
/// # Ok::<(), tower_api_key::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ScopeModel {
    pub(super) inner: Arc<Inner>,
}

impl ScopeModel {
    pub(super) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Checks the scopes requested for a new key: every one must be declared.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first scope that is malformed or not declared.
    pub fn validate_scopes<I, S>(&self, scopes: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for scope in scopes {
            let scope = scope.as_ref();
            if self.inner.index_of(scope).is_none() {
                check_scope(scope, self.inner.allow_uppercase)?;
                return Err(ConfigError::new(format!("unknown scope {scope:?}")));
            }
        }
        Ok(())
    }

    /// The scopes of a named preset, patterns expanded, or `None`.
    pub fn preset(&self, name: &str) -> Option<&[String]> {
        self.inner
            .presets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, scopes)| scopes.as_slice())
    }

    /// Every preset, in declaration order.
    pub fn presets(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.inner
            .presets
            .iter()
            .map(|(name, scopes)| (name.as_str(), scopes.as_slice()))
    }

    /// The scopes a new key gets when its creator picks none. They are a default for
    /// creation only; compare [`granted_to_all`](Self::granted_to_all).
    pub fn creation_defaults(&self) -> &[String] {
        &self.inner.creation_defaults
    }

    /// The scopes every key holds, whatever it was given. [`grants`](Self::grants)
    /// always includes them (and what they imply).
    pub fn granted_to_all(&self) -> &[String] {
        &self.inner.granted_to_all
    }

    /// Whether `scope` is declared (exactly; no patterns).
    pub fn contains(&self, scope: &str) -> bool {
        self.inner.index_of(scope).is_some()
    }

    /// Every declared scope, in declaration order.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.inner.names.iter().map(|name| &**name)
    }

    pub(super) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}

impl fmt::Debug for ScopeModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Implications<'a>(&'a Inner);
        impl fmt::Debug for Implications<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.implications.iter().map(|&(from, to)| {
                        format!(
                            "{} ⇒ {}",
                            self.0.name(usize::from(from)),
                            self.0.name(usize::from(to))
                        )
                    }))
                    .finish()
            }
        }
        let inner = &*self.inner;
        f.debug_struct("ScopeModel")
            .field("scopes", &inner.names)
            .field("implications", &Implications(inner))
            .field("granted_to_all", &inner.granted_to_all)
            .field("creation_defaults", &inner.creation_defaults)
            .field("presets", &inner.presets)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ScopeModel {
        ScopeModel::builder()
            .resource("a", ["read", "write"])
            .scope("base")
            .action_implies("write", "read")
            .granted_to_all(["base"])
            .build()
            .unwrap()
    }

    #[test]
    fn unknown_and_odd_input_grants_nothing() {
        let model = model();
        let long = "a:read".repeat(100);
        let grants = model.grants(["A:READ", "a:read ", "", "*", "a:*", long.as_str()]);
        assert_eq!(grants.iter().collect::<Vec<_>>(), ["base"]);
        assert_eq!(grants, model.grants(Vec::<String>::new()));
    }

    #[test]
    fn validate_scopes_names_the_first_bad_one() {
        let model = model();
        model.validate_scopes(["a:read", "base"]).unwrap();
        model.validate_scopes(Vec::<&str>::new()).unwrap();
        let err = model
            .validate_scopes(["a:read", "b:read", "c"])
            .unwrap_err();
        assert_eq!(err.message(), "unknown scope \"b:read\"");
        let err = model.validate_scopes(["a read"]).unwrap_err();
        assert!(err.message().contains("\"a read\""), "{err}");
    }

    #[test]
    fn accessors() {
        let model = model();
        assert_eq!(
            model.scopes().collect::<Vec<_>>(),
            ["a:read", "a:write", "base"]
        );
        assert!(model.contains("a:write"));
        assert!(!model.contains("a:*"));
        assert_eq!(model.granted_to_all(), ["base"]);
        assert!(model.creation_defaults().is_empty());
        assert_eq!(model.presets().count(), 0);
        let shown = format!("{model:?}");
        assert!(shown.contains("a:write ⇒ a:read"), "{shown}");
    }

    #[test]
    fn covers_compares_closed_sets() {
        let model = model();
        let writer = model.grants(["a:write"]);
        assert!(model.covers(&writer, &model.grants(["a:read"])));
        assert!(model.covers(&writer, &writer));
        assert!(!model.covers(&model.grants(["a:read"]), &writer));
        // Another model's grants are never covered, nor do they cover.
        let other = self::model();
        assert!(!model.covers(&other.grants(["a:write"]), &model.grants(["a:read"])));
        assert!(!model.covers(&writer, &other.grants(["a:read"])));
    }

    #[test]
    fn clones_share_the_model() {
        let model = model();
        let clone = model.clone();
        assert!(clone.covers(&model.grants(["a:write"]), &clone.grants(["a:read"])));
    }
}
