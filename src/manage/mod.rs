//! Key lifecycle: the [`KeyManager`] (create, list, revoke, rotate with grace), with its
//! authority rules.

mod error;
mod manager;

pub use self::error::{Denied, ManageError};
pub use self::manager::{Actor, CreatedKey, Expiry, KeyManager, NewKey, MAX_NAME_LEN};
