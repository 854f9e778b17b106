//! Ready-made settings that reproduce the five documented API products: their scope
//! models, key formats, key sources and error styles, one module per product.
//!
//! Nothing else in the crate depends on this module; it is built from the same public
//! pieces an application uses, so each function here is also an example of configuring
//! the crate for a product of your own.
//!
//! | module | product | reproduces |
//! |---|---|---|
//! | [`performance_blocks`] | Performance Blocks API | `pb_live_`/`pb_test_` Bearer keys, `resource:action` scopes where write implies read, `session:read` for every key, presets, the `authentication_required`/`permission_denied` envelope |
//! | [`workspace`] | a workspace API | `read:all`, `write:all`, `admin` where `admin` encompasses the others |
//! | [`product_bridge`] | ProductBridge | the key as `api_key` in the JSON body of every POST, and one generic 401 `invalid api_key` |
//! | [`pgbeam`] | PgBeam | personal (`pbu_`) and organization (`pbo_`) keys, in `Authorization: Bearer` or `X-API-Key` |
//! | [`promptfloe`] | PromptFloe | `pf_live_`/`pf_test_`/`pf_dev_` keys, default scopes `read` + `build`, `invalid_key`/`expired_key`/`missing_scope`/`quota_exceeded` errors |
//!
//! ```
//! use tower_api_key::auth::ApiKeyAuth;
//! use tower_api_key::presets::performance_blocks;
//! use tower_api_key::store::MemoryStore;
//!
//! # fn main() -> Result<(), tower_api_key::ConfigError> {
//! let auth = ApiKeyAuth::builder(MemoryStore::new())
//!     .format(performance_blocks::key_format())
//!     .scopes(performance_blocks::scope_model())
//!     .responder(performance_blocks::error_style())
//!     .build()?;
//! let _guard = auth.guard("observations:write")?;
//! # Ok(())
//! # }
//! ```

pub mod performance_blocks;
pub mod pgbeam;
pub mod product_bridge;
pub mod promptfloe;
pub mod workspace;
