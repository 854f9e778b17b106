//! Key lifecycle: the write-behind `last_used_at` buffer.

mod last_used;

pub use self::last_used::LastUsed;
