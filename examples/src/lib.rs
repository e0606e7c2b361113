//! # distribution-examples: the demo cluster
//!
//! The Rust counterpart of the Go original's `_example`: one program, `distribution-demo`, that
//! runs as
//!
//! - `master`: the registry on `:3000` plus an HTTP gateway on `:3001` answering `/sum` and
//!   `/palindrom` by routing calls to the nodes ([`gateway`]);
//! - `node --master HOST:PORT`: a node serving the [`service::Calc`] service (`calc`), or with
//!   `--service text` the [`text::Text`] service (`text`, the gateway's `/upper`);
//! - `client --master HOST:PORT sum|palindrome|watch`: a job run from its own process through a
//!   remote router that calls the nodes directly ([`client`]).
//!
//! The pieces: [`service`] (the tarpc service and its node-side implementation), [`palindrome`]
//! (the counting and the chunking), [`gateway`] (the HTTP endpoints), [`cluster`] (start a master
//! with its gateway, or a node, on already-bound listeners: what the binary and the tests call), [`telemetry`] (the
//! Prometheus exporter behind the programs' `GET /metrics`).

pub mod client;
pub mod cluster;
pub mod gateway;
pub mod palindrome;
pub mod service;
pub mod telemetry;
pub mod text;
