//! Scheduling of ready actors.

mod ready_queue_scheduler;

pub use ready_queue_scheduler::ReadyQueueScheduler;

/// What every scheduler offers to the dispatcher.
pub trait Scheduler: Default {
    /// Marks `actor` as having work.
    fn schedule(&mut self, actor: usize);
    /// The next actor to run, if any.
    fn next_ready(&mut self) -> Option<usize>;
}

/// The scheduler the dispatcher uses.
pub type ActiveScheduler = ReadyQueueScheduler;
