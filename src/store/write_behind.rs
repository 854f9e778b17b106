//! What the write-behind buffers share (last-used times, usage counts): the task that
//! flushes one every interval for as long as it lives, and the last write when it is
//! dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use super::StoreError;

/// A buffer that writes what it holds into the store.
pub(crate) trait Flush: Send + Sync + 'static {
    /// Writes what is pending; on failure keeps it for the next try.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Flushes `buffer` every `interval` until it is dropped; a failure is logged as a
/// failed `what` flush and retried at the next tick.
pub(crate) async fn flush_every<T: Flush>(buffer: Weak<T>, interval: Duration, what: &str) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(buffer) = buffer.upgrade() else {
            return;
        };
        if let Err(error) = buffer.flush().await {
            tracing::warn!(target: "tower_api_key", %error, "{what} flush failed; will retry");
        }
    }
}

/// Runs a dropped buffer's last `write` on the current tokio runtime, if there is one
/// (nothing can wait for it: a failure is logged).
pub(crate) fn write_on_drop(
    write: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
    what: &'static str,
) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            if let Err(error) = write.await {
                tracing::warn!(target: "tower_api_key", %error, "final {what} flush failed");
            }
        });
    }
}
