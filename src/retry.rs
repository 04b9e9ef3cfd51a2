//! Retries of backend calls: exponential backoff with full jitter, a bounded
//! number of attempts, and only for transient failures. Written once, used by
//! every backend call of the core.

use std::future::Future;
use std::time::Duration;

use crate::pad_store::BackendError;

/// How hard to retry a transient backend failure.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all (the first try included); at least 1.
    pub attempts: u32,
    /// Delay cap before the second attempt; doubles each time up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 10,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails permanently, or runs out of attempts.
    /// `op` receives the attempt number (0 for the first try).
    pub async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, BackendError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut attempt = 0;
        loop {
            match op(attempt).await {
                Err(error) if error.is_transient() && attempt + 1 < self.attempts.max(1) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                Err(BackendError::Transient(message)) if self.attempts > 1 => {
                    return Err(BackendError::Transient(format!(
                        "{message}; gave up after {} attempts",
                        self.attempts
                    )));
                }
                result => return result,
            }
        }
    }

    /// Full jitter: a uniform delay in [0, min(max, base * 2^attempt)].
    fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        cap.mul_f64(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_micros(10),
            max_delay: Duration::from_micros(100),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = quick(5)
            .run(|_| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(BackendError::Transient("flaky".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried_and_attempts_are_bounded() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick(5)
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(BackendError::Permanent("denied".into()))
            })
            .await;
        assert_eq!(result, Err(BackendError::Permanent("denied".into())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick(3)
            .run(|_| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(BackendError::Transient("down".into()))
            })
            .await;
        assert!(matches!(result, Err(BackendError::Transient(m)) if m.contains("3 attempts")));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
