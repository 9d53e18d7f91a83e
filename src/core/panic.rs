//! Panics caught at the boundary of one input: a future that turns a panic while it is polled
//! into an `Err` carrying the payload, so the runtime can dead-letter the input that caused it
//! and go on (issue 14.2).

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The dead-letter reason of an input whose processing panicked.
pub const INTERNAL_ERROR: &str = "internal_error";

/// What a caught panic carries.
pub type Payload = Box<dyn Any + Send>;

/// `fut`, with a panic while it is polled returned as `Err(payload)`.
///
/// The caller asserts unwind safety: whatever the future borrowed mutably may be half-updated
/// after a panic, and the caller must treat it so (the runtime retries the input record by
/// record and dead-letters the one that panics).
///
/// `F: Unpin`: operator and source calls are boxed futures (`async_trait`); box others.
pub fn catch<F: Future + Unpin>(fut: F) -> CatchUnwind<F> {
    CatchUnwind { fut }
}

/// See [`catch`].
pub struct CatchUnwind<F> {
    fut: F,
}

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Payload>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = Pin::new(&mut self.fut);
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The text of a caught panic's payload.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The dead-letter message for an input whose processing by `who` panicked with `payload`.
pub fn report(who: &str, payload: &(dyn Any + Send)) -> String {
    format!(
        "{who} panicked on this input: {} (a bug in osprey: please report it with this input)",
        message(payload)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(fut: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn a_panic_while_polled_is_an_err_and_a_value_is_ok() {
        let caught = block_on(catch(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 7)
        })));
        assert_eq!(message(&*caught.unwrap_err()), "boom 7");
        assert_eq!(block_on(catch(Box::pin(async { 5 }))).unwrap(), 5);
    }

    #[test]
    fn payloads_become_messages() {
        let caught = catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(message(&*caught), "static");
        let caught = catch_unwind(|| std::panic::panic_any(3_u8)).unwrap_err();
        assert_eq!(message(&*caught), "a panic without a message");
    }
}
