//! Scopes: which keys may call which routes.
//!
//! A [`ScopeModel`] declares the scopes an API knows, how they imply one another
//! (`employees:write` ⇒ `employees:read`, `admin` ⇒ `read:all`), which scopes every
//! key holds (`session:read`), the defaults offered to new keys and named presets.
//! Everything is checked and precomputed when the model is built, so mistakes surface
//! at startup as a [`ConfigError`](crate::ConfigError) naming the offending text, and
//! the request path does only bit arithmetic:
//!
//! - [`ScopeModel::grants`] turns a key's stored scope strings into its [`Grants`],
//!   closed under implication. Unknown strings grant nothing.
//! - [`ScopeModel::requirement`] parses what a route needs, such as
//!   `observations:write OR summaries:write AND employees:read`, into a
//!   [`Requirement`].
//! - [`Requirement::is_satisfied_by`] answers the check, and
//!   [`Requirement::missing`] says which scopes would have been enough, for the 403.
//!
//! The documented products' models are ready-made in [`presets`](crate::presets);
//! [`ScopeModel::builder`] makes any other.
//!
//! # Example
//!
//! ```
//! use tower_api_key::ScopeModel;
//!
//! let model = tower_api_key::presets::performance_blocks::scope_model();
//! let needed = model.requirement("observations:write")?;
//!
//! // A key stored with `observations:read`: implications and defaults applied.
//! let reader = model.grants(["observations:read"]);
//! assert!(reader.contains("session:read"));
//! assert!(!needed.is_satisfied_by(&reader));
//! assert_eq!(needed.missing(&reader), ["observations:write"]);
//!
//! let writer = model.grants(["observations:write"]);
//! assert!(needed.is_satisfied_by(&writer));
//! assert!(writer.contains("observations:read"));
//!
//! // A key may only create keys it could have created itself.
//! assert!(!model.covers(&reader, &writer));
//! assert!(model.covers(&writer, &reader));
//! # Ok::<(), tower_api_key::ConfigError>(())
//! ```

mod bits;
mod builder;

mod grants;
mod model;
mod requirement;
mod syntax;

pub use self::builder::{ScopeModelBuilder, MAX_SCOPES};
pub use self::grants::Grants;
pub use self::model::ScopeModel;
pub use self::requirement::Requirement;
pub use self::syntax::MAX_SCOPE_LEN;
