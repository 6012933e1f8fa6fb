//! The original scheduler: a plain FIFO of ready actors.

use std::collections::VecDeque;

use super::Scheduler;

#[derive(Default)]
pub struct ReadyQueueScheduler {
    ready: VecDeque<usize>,
}

impl Scheduler for ReadyQueueScheduler {
    fn schedule(&mut self, actor: usize) {
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
    fn runs_actors_in_order() {
        let mut scheduler = ReadyQueueScheduler::default();
        scheduler.schedule(3);
        scheduler.schedule(5);
        assert_eq!(scheduler.next_ready(), Some(3));
        assert_eq!(scheduler.next_ready(), Some(5));
        assert_eq!(scheduler.next_ready(), None);
    }
}
