//! What the router's unit tests share: a one-method service whose client they route (no test
//! dials a node: they pick, count and eject).

/// The test service.
#[tarpc::service]
pub(crate) trait Echo {
    /// Returns `value`.
    async fn echo(value: u32) -> u32;
}
distribution_shared::service_client!(EchoClient);
