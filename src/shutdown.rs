//! Waiting for shutdown in every connection's task, which is woken most of all: a stream's
//! body is polled in its connection's task, so that task wakes for every write.
//!
//! `CancellationToken::cancelled()` takes two locks shared by every clone of the token
//! each time it is polled, and a future in `tokio::select!` is polled on every wake-up of
//! its task, whichever branch woke it. With a thousand streams each woken for every fact,
//! those locks were a measurable share of the server's CPU per delivery in the load
//! generator's fan-out (`docs/performance.md`). [`Cancelled`] polls the
//! token's future only after that future has itself asked to be polled again, and is
//! otherwise a check of one atomic flag. (Live streams do not wait for shutdown at all:
//! they end when the notifier closes.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Resolves once the token is cancelled.
pub struct Cancelled {
    /// Boxed so that `Cancelled` is `Unpin` (the token's future is not).
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    woken: Arc<Woken>,
}

/// The waker given to the token's future: it records that the future wants polling, then
/// wakes the task that holds the [`Cancelled`].
struct Woken {
    /// Set by a wake-up of the token's future (and at the start, for its first poll).
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Cancelled {
    /// Waits for `token` to be cancelled.
    pub fn new(token: &CancellationToken) -> Self {
        Self {
            cancelled: Box::pin(token.clone().cancelled_owned()),
            woken: Arc::new(Woken {
                flag: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Registered before the flag is read, so a wake-up in between is not lost.
        self.woken.task.register(cx.waker());
        if !self.woken.flag.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(&self.woken));
        self.cancelled
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One poll of `future`, from inside a task.
    async fn poll_once(future: &mut Cancelled) -> Poll<()> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }

    #[tokio::test]
    async fn resolves_when_the_token_is_cancelled_and_not_before() {
        let token = CancellationToken::new();
        let mut shutdown = Cancelled::new(&token);
        for _ in 0..3 {
            assert!(poll_once(&mut shutdown).await.is_pending());
        }
        let canceller = token.clone();
        tokio::spawn(async move { canceller.cancel() });
        tokio::time::timeout(std::time::Duration::from_secs(10), shutdown)
            .await
            .expect("Cancelled resolves after cancel");
    }

    #[tokio::test]
    async fn resolves_at_once_when_already_cancelled() {
        let token = CancellationToken::new();
        token.cancel();
        assert!(poll_once(&mut Cancelled::new(&token)).await.is_ready());
    }
}
