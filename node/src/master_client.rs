//! The node's side of the master's registry API (register, heartbeat, leave): the shared
//! [`RegistryClient`](distribution_shared::registry_client::RegistryClient) under the names this
//! crate has always used, so that a node and a remote caller parse a master's address with one
//! parser and fail with one error.

pub use distribution_shared::registry_client::{
    AddressError, RegistryClient as MasterClient, RegistryError as MasterError, RegistrySettings,
};
