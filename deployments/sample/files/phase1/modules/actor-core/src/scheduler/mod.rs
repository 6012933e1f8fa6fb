//! Scheduling of ready actors.

mod ready_queue_scheduler;
#[cfg(feature = "new-scheduler")]
mod ready_queue_coordinator;

pub use ready_queue_scheduler::ReadyQueueScheduler;
#[cfg(feature = "new-scheduler")]
pub use ready_queue_coordinator::ReadyQueueCoordinator;

/// What every scheduler offers to the dispatcher.
pub trait Scheduler: Default {
    /// Marks `actor` as having work.
    fn schedule(&mut self, actor: usize);
    /// The next actor to run, if any.
    fn next_ready(&mut self) -> Option<usize>;
}

/// The scheduler the dispatcher uses: the coordinator only behind the flag.
#[cfg(feature = "new-scheduler")]
pub type ActiveScheduler = ReadyQueueCoordinator;
#[cfg(not(feature = "new-scheduler"))]
pub type ActiveScheduler = ReadyQueueScheduler;
