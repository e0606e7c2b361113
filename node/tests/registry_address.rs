//! A node and a remote caller read a master's address with one parser (the shared registry
//! client): given the same wrong address they refuse it up front, with the same error.

use distribution_client::remote::{self, ConnectError, RemoteConfig};
use distribution_node::{MasterError, NodeConfig, StartError, handler};
use tarpc::context;
use tokio::net::TcpListener;

#[tarpc::service]
trait Ping {
    async fn ping() -> u8;
}

#[derive(Clone)]
struct PingServer;

impl Ping for PingServer {
    async fn ping(self, _: context::Context) -> u8 {
        1
    }
}

#[tokio::test]
async fn a_node_and_a_remote_caller_refuse_the_same_bad_address_alike() {
    const BAD: &str = "http://m:3000/path";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node =
        distribution_node::start(listener, NodeConfig::new(BAD), handler!(PingServer.serve()));
    let Err(node_err) = node else {
        panic!("the node accepted {BAD:?}");
    };
    let remote_err = remote::follow(BAD, &RemoteConfig::default())
        .await
        .expect_err("the remote caller accepted the address");
    let events_err = remote::events(BAD, &RemoteConfig::default())
        .err()
        .expect("the event stream accepted the address");
    let (
        StartError::Master(MasterError::BadAddress {
            problem: from_node, ..
        }),
        ConnectError::InvalidAddress {
            problem: from_remote,
            ..
        },
        ConnectError::InvalidAddress {
            problem: from_events,
            ..
        },
    ) = (&node_err, &remote_err, &events_err)
    else {
        panic!("not address errors: {node_err:?} / {remote_err:?} / {events_err:?}");
    };
    assert_eq!(from_node, from_remote);
    assert_eq!(from_node, from_events);
    assert_eq!(node_err.to_string(), remote_err.to_string());
    assert!(
        node_err.to_string().contains("without a path"),
        "{node_err}"
    );
}
