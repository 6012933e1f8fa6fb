//! Helpers shared by the framework's crates.

/// Splits `total` messages into batches of at most `batch` messages.
pub fn batches(total: usize, batch: usize) -> usize {
    if batch == 0 {
        return 0;
    }
    (total + batch - 1) / batch
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_round_up() {
        assert_eq!(super::batches(10, 4), 3);
        assert_eq!(super::batches(0, 4), 0);
    }
}
