//! A FIFO mailbox per actor.

use std::collections::VecDeque;

/// One message addressed to one actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub actor: usize,
    pub payload: u64,
}

/// Messages waiting for their actor, oldest first.
#[derive(Default)]
pub struct Mailbox {
    queue: VecDeque<Envelope>,
}

impl Mailbox {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { queue: VecDeque::with_capacity(capacity) }
    }

    pub fn enqueue(&mut self, envelope: Envelope) {
        self.queue.push_back(envelope);
    }

    pub fn dequeue(&mut self) -> Option<Envelope> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_is_fifo() {
        let mut mailbox = Mailbox::with_capacity(2);
        mailbox.enqueue(Envelope { actor: 1, payload: 10 });
        mailbox.enqueue(Envelope { actor: 2, payload: 20 });
        assert_eq!(mailbox.dequeue().map(|e| e.payload), Some(10));
        assert_eq!(mailbox.len(), 1);
    }
}
