//! What protecting an API needs, in one import: `use tower_api_key::prelude::*;`.
//!
//! ```
//! use tower_api_key::prelude::*;
//!
//! # fn main() -> Result<(), ConfigError> {
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(KeyFormat::new("inv")?)
//!     .scopes(ScopeModel::builder().resource("invoices", ["read", "write"]).build()?)
//!     .build()?;
//! let _guard = auth.guard("invoices:read")?;
//! # Ok(())
//! # }
//! ```

pub use crate::auth::{ApiKeyAuth, ApiKeyAuthBuilder, Guard};
pub use crate::credentials::KeySources;
pub use crate::error::ConfigError;
pub use crate::key::KeyFormat;
pub use crate::manage::{Actor, CreatedKey, Expiry, KeyManager, ManageError, NewKey};
pub use crate::principal::Principal;
pub use crate::rate_limit::{Limits, MemoryLimiter, QuotaPolicy, RateLimitLayer, RatePolicy};
pub use crate::rejection::{ErrorStyle, Rejection, RejectionKind, Responder};
pub use crate::scope::ScopeModel;
#[cfg(feature = "postgres")]
pub use crate::store::sql::PostgresStore;
#[cfg(feature = "sqlite")]
pub use crate::store::sql::SqliteStore;
pub use crate::store::{KeyRecord, KeyStore, ManagedKeyStore, MemoryStore, Owner};
