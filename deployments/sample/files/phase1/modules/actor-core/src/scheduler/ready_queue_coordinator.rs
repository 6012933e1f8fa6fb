//! The refactored scheduler: a ready queue with per-actor fairness accounting.
//!
//! Each decision updates a fairness score for the actor's shard; the bookkeeping costs
//! a measurable share of the dispatch time (the reason Phase 1 may be rolled back).

use std::collections::VecDeque;

use super::Scheduler;

const SHARDS: usize = 64;
const FAIRNESS_ROUNDS: u32 = 6;

pub struct ReadyQueueCoordinator {
    ready: VecDeque<usize>,
    fairness: [u64; SHARDS],
}

impl Default for ReadyQueueCoordinator {
    fn default() -> Self {
        Self { ready: VecDeque::new(), fairness: [0; SHARDS] }
    }
}

impl ReadyQueueCoordinator {
    fn account(&mut self, actor: usize) {
        let shard = actor % SHARDS;
        let mut score = self.fairness[shard] ^ actor as u64;
        for round in 0..FAIRNESS_ROUNDS {
            score = score.rotate_left(round % 7 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(round);
        }
        self.fairness[shard] = score;
    }
}

impl Scheduler for ReadyQueueCoordinator {
    fn schedule(&mut self, actor: usize) {
        self.account(actor);
        self.ready.push_back(actor);
    }

    fn next_ready(&mut self) -> Option<usize> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fifo_order() {
        let mut coordinator = ReadyQueueCoordinator::default();
        coordinator.schedule(1);
        coordinator.schedule(2);
        assert_eq!(coordinator.next_ready(), Some(1));
        assert_eq!(coordinator.next_ready(), Some(2));
    }
}
