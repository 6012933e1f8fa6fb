//! Runtime abstraction: spawn on Tokio or Embassy behind one interface.

#[cfg(not(feature = "new-scheduler"))]
pub fn runtime_name() -> &'static str {
    "tokio"
}

#[cfg(feature = "new-scheduler")]
pub fn runtime_name() -> &'static str {
    if cfg!(feature = "runtime-embassy") { "embassy" } else { "tokio" }
}
