//! actor-core: actor cells, mailboxes and the ready-queue scheduler.

pub mod api;
pub mod mailbox;
pub mod scheduler;

// -- worker execution (Phase 2A) --
#[cfg(feature = "new-scheduler")]
pub mod executor;
// -- end worker execution --

// -- runtime abstraction (Phase 3) --
// (none yet)
// -- end runtime abstraction --

// -- optimisations (Phase 4) --
// (none yet)
// -- end optimisations --

pub use mailbox::{Envelope, Mailbox};
pub use scheduler::{ActiveScheduler, Scheduler};

/// Delivers every queued message of `mailbox`, letting `scheduler` pick the order.
pub fn drain<S: Scheduler>(mailbox: &mut Mailbox, scheduler: &mut S) -> u64 {
    let mut checksum = 0u64;
    while let Some(envelope) = mailbox.dequeue() {
        scheduler.schedule(envelope.actor);
        if let Some(actor) = scheduler.next_ready() {
            checksum = checksum.wrapping_add(envelope.payload ^ actor as u64);
        }
    }
    checksum
}
