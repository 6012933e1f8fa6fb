//! WorkerExecutor: runs ready actors on a fixed pool of worker tasks.

use crate::scheduler::Scheduler;

pub struct WorkerExecutor<S: Scheduler> {
    scheduler: S,
    workers: usize,
}

impl<S: Scheduler> WorkerExecutor<S> {
    pub fn new(workers: usize) -> Self {
        Self { scheduler: S::default(), workers }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn submit(&mut self, actor: usize) {
        self.scheduler.schedule(actor);
    }
}
