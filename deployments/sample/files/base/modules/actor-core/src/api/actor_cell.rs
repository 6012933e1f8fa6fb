//! ActorCell: owns an actor and delivers its messages.

use crate::mailbox::{Envelope, Mailbox};

/// What user code implements.
pub trait Actor {
    fn receive(&mut self, message: Envelope) -> Result<(), ActorError>;
}

#[derive(Debug, PartialEq, Eq)]
pub enum ActorError {
    Stopped,
}

pub struct ActorCell<A: Actor> {
    actor: A,
    mailbox: Mailbox,
}

impl<A: Actor> ActorCell<A> {
    pub fn new(actor: A) -> Self {
        Self { actor, mailbox: Mailbox::default() }
    }

    pub fn tell(&mut self, message: Envelope) {
        self.mailbox.enqueue(message);
    }

    /// Delivers one message straight to the actor.
    pub fn invoke_message(&mut self, message: Envelope) -> Result<(), ActorError> {
        self.actor.receive(message)
    }

    /// Delivers every queued message; returns how many were handled.
    pub fn run(&mut self) -> Result<usize, ActorError> {
        let mut handled = 0;
        while let Some(message) = self.mailbox.dequeue() {
            self.invoke_message(message)?;
            handled += 1;
        }
        Ok(handled)
    }
}
