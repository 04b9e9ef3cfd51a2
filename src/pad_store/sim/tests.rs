//! The simulation's unit tests.

use super::*;

#[test]
fn settings_are_clamped() {
    #[derive(Debug)]
    struct Nothing(Capabilities);
    #[async_trait]
    impl Backend for Nothing {
        async fn reserve(&self, _: &str, _: Bytes) -> Result<(), BackendError> {
            Ok(())
        }
        async fn put(&self, _: &str, _: Bytes) -> Result<PutReceipt, BackendError> {
            Ok(PutReceipt {
                e_tag: None,
                size: 0,
            })
        }
        async fn verify(&self, _: &str, _: &PutReceipt) -> Result<(), BackendError> {
            Ok(())
        }
        async fn get(&self, _: &str) -> Result<Bytes, BackendError> {
            Ok(Bytes::new())
        }
        async fn list(&self, _: &str) -> Result<Vec<String>, BackendError> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> Result<(), BackendError> {
            Ok(())
        }
        fn capabilities(&self) -> &Capabilities {
            &self.0
        }
        fn describe(&self) -> String {
            "nothing://".into()
        }
    }
    #[async_trait]
    impl WriterLocking for Nothing {
        async fn lock_writer(&self, _: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError> {
            Err(BackendError::Permanent("no locks here".into()))
        }
    }
    let nothing = Nothing(Capabilities::default());
    let sim = SimPadStore::new(
        Arc::new(nothing),
        SimConfig {
            latency_ms: -1.0,
            jitter_ms: f64::NAN,
            fail_rate: 3.0,
            ..SimConfig::default()
        },
    );
    assert_eq!(sim.config().latency_ms, 0.0);
    assert_eq!(sim.config().jitter_ms, 0.0);
    assert_eq!(sim.config().fail_rate, 1.0);
    assert_eq!(sim.describe(), "sim+nothing://?fail_rate=1");
}
