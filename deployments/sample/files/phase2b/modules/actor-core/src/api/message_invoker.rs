//! MessageInvoker: message delivery split out of ActorCell, with a middleware chain.

use crate::mailbox::Envelope;

/// Hooks run before a message reaches the actor.
#[derive(Default)]
pub struct MiddlewareChain {
    stages: Vec<fn(Envelope) -> Envelope>,
}

impl MiddlewareChain {
    pub fn push(&mut self, stage: fn(Envelope) -> Envelope) {
        self.stages.push(stage);
    }
}

pub struct MessageInvoker {
    chain: MiddlewareChain,
}

impl MessageInvoker {
    pub fn new(chain: MiddlewareChain) -> Self {
        Self { chain }
    }

    pub fn before(&self, message: Envelope) -> Envelope {
        self.chain.stages.iter().fold(message, |m, stage| stage(m))
    }
}
