//! [`TimedPadStore`]: a pass-through [`Backend`] that records when each call
//! started and ended. The sim's op log gives the order of calls; this gives
//! their times, so a put's schedule can be drawn phase by phase.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anthill::pad_store::{
    Backend, BackendError, Capabilities, OpKind, PutReceipt, WriterLock, WriterLocking,
};
use async_trait::async_trait;
use bytes::Bytes;

/// One call: what, on which object, from when to when (seconds since the
/// store's `epoch`).
#[derive(Debug, Clone)]
pub struct TimedCall {
    pub kind: OpKind,
    pub name: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Debug)]
pub struct TimedPadStore {
    inner: Arc<dyn Backend>,
    /// The inner backend's, without direct folder writes: every put comes
    /// through here to be timed.
    capabilities: Capabilities,
    /// Calls finished since the last `reset`, and the time they count from.
    calls: Mutex<(Instant, Vec<TimedCall>)>,
}

impl TimedPadStore {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        let capabilities = Capabilities {
            folder_writer: None,
            ..inner.capabilities().clone()
        };
        Self {
            inner,
            capabilities,
            calls: Mutex::new((Instant::now(), Vec::new())),
        }
    }

    /// Forgets recorded calls; times count from now on.
    pub fn reset(&self) {
        *self.calls.lock().expect("calls lock") = (Instant::now(), Vec::new());
    }

    /// The calls finished since the last `reset`, by start time.
    pub fn calls(&self) -> Vec<TimedCall> {
        let mut calls = self.calls.lock().expect("calls lock").1.clone();
        calls.sort_by(|a, b| a.start.total_cmp(&b.start));
        calls
    }

    async fn timed<T>(
        &self,
        kind: OpKind,
        name: &str,
        call: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let epoch = self.calls.lock().expect("calls lock").0;
        let start = epoch.elapsed().as_secs_f64();
        let result = call.await;
        let end = epoch.elapsed().as_secs_f64();
        self.calls.lock().expect("calls lock").1.push(TimedCall {
            kind,
            name: name.to_owned(),
            start,
            end,
        });
        result
    }
}

#[async_trait]
impl Backend for TimedPadStore {
    async fn reserve(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        self.timed(OpKind::Reserve, name, self.inner.reserve(name, content))
            .await
    }

    async fn reserve_durable(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        self.timed(
            OpKind::Reserve,
            name,
            self.inner.reserve_durable(name, content),
        )
        .await
    }

    async fn put(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        self.timed(OpKind::Put, name, self.inner.put(name, content))
            .await
    }

    async fn put_durable(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        self.timed(
            OpKind::DurablePut,
            name,
            self.inner.put_durable(name, content),
        )
        .await
    }

    async fn verify(&self, name: &str, receipt: &PutReceipt) -> Result<(), BackendError> {
        self.timed(OpKind::Verify, name, self.inner.verify(name, receipt))
            .await
    }

    async fn get(&self, name: &str) -> Result<Bytes, BackendError> {
        self.timed(OpKind::Get, name, self.inner.get(name)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        self.timed(OpKind::List, prefix, self.inner.list(prefix))
            .await
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        self.timed(OpKind::Delete, name, self.inner.delete(name))
            .await
    }

    async fn remove_partial_writes(&self) -> Result<usize, BackendError> {
        self.inner.remove_partial_writes().await
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[async_trait]
impl WriterLocking for TimedPadStore {
    async fn lock_writer(&self, holder: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError> {
        self.inner.lock_writer(holder).await
    }
}
