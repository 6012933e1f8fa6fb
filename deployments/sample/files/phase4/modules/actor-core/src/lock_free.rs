//! Lock-free ready-queue counters (Phase 4 optimisation).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct ReadyCounter(AtomicU64);

impl ReadyCounter {
    pub fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
}
