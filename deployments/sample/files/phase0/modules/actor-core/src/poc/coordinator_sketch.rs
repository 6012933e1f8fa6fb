//! PoC only: a coordinator sketch, never merged.
pub struct CoordinatorSketch;
