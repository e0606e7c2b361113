//! Waiting for the signals that stop a node gracefully: SIGTERM (`docker stop`, scaling down)
//! and Ctrl-C. The wait itself lives in [`distribution_shared::shutdown`], since the master's
//! binary waits for the same signals; it is re-exported here so node programs need one crate.

pub use distribution_shared::shutdown::signal;
