//! The demo's second service, `Text`, next to `Calc`: it shows one master routing two named
//! services. Nodes started with `distribution-demo node --service text` serve it; the gateway
//! answers `GET /upper?text=…` by routing to them only (a `Calc` router never meets a `Text`
//! node, nor the other way round, whatever the order they registered in).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use distribution_client::{CallOptions, CallRouter};
use distribution_node::{NodeConfig, NodeHandle, handler};
use serde::Deserialize;
use tarpc::context::Context;
use tokio::net::TcpListener;

/// The longest text `/upper` takes, in bytes.
pub const MAX_TEXT: usize = 4096;

/// Text transformations.
#[tarpc::service]
pub trait Text {
    /// `text` in upper case.
    async fn upper(text: String) -> String;
}

distribution_shared::service_client!(TextClient, "text");

/// The node-side implementation of [`Text`].
#[derive(Debug, Clone, Default)]
pub struct TextServer;

impl Text for TextServer {
    async fn upper(self, _: Context, text: String) -> String {
        text.to_uppercase()
    }
}

/// Starts a node serving [`Text`] on `listener` (registered as service `text`).
pub fn start_text_node(
    listener: TcpListener,
    config: NodeConfig,
) -> Result<NodeHandle, distribution_node::StartError> {
    let server = TextServer;
    distribution_node::start(
        listener,
        config.serving::<TextClient>(),
        handler!(server.serve()),
    )
}

/// The query of `GET /upper`.
#[derive(Debug, Deserialize)]
pub struct UpperParams {
    text: Option<String>,
}

/// `GET /upper?text=…`: the text in upper case, from a `text` node.
pub async fn upper(
    State(router): State<CallRouter<TextClient>>,
    params: Result<Query<UpperParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let text = match params {
        Ok(Query(UpperParams { text: Some(text) })) if text.len() <= MAX_TEXT => text,
        Ok(Query(UpperParams { text: Some(_) })) => {
            let message = format!("text must be at most {MAX_TEXT} bytes\n");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
        Ok(_) => return (StatusCode::BAD_REQUEST, "give ?text=...\n").into_response(),
        Err(err) => return (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    };
    let options = CallOptions::default().idempotent();
    let reply = router
        .call_with(options, move |client, ctx| {
            let text = text.clone();
            async move { client.upper(ctx, text).await }
        })
        .await;
    match reply {
        Ok(reply) => {
            format!("Response from node {}: {}\n", reply.node, reply.value).into_response()
        }
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n")).into_response(),
    }
}
