//! Key lifecycle: the [`KeyManager`] (create, list, revoke, rotate with grace) and the
//! write-behind [`LastUsed`] buffer.

mod error;
mod last_used;
mod manager;

pub use self::error::{Denied, ManageError};
pub use self::last_used::LastUsed;
pub use self::manager::{Actor, CreatedKey, Expiry, KeyManager, NewKey, MAX_NAME_LEN};
