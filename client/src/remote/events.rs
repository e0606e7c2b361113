//! [`events`]: a master's membership events (its `GET /v1/events`) as a Rust stream, from any
//! process, like Atomizer's event channel.
//!
//! The stream follows the server-sent events through outages: when the connection drops, the
//! master is down, or it stops answering (no answer within the request timeout, or neither an
//! event nor one of its keep-alives within [`RemoteConfig::events_idle_timeout`]: a paused
//! process keeps its connections open) it reconnects with a backoff (the remote caller's `retry_base` doubling to
//! `retry_max`) and resumes with `Last-Event-ID`, so nothing within the master's bounded history
//! (the master's `events::HISTORY`) is missed; a gap beyond it is logged. A restarted master (its
//! index starts again from zero) sends its whole history. With several masters it reads one and
//! fails over to the next (the `failover` module); each master numbers its own events, so after
//! a switch it reads the new master's events from then on (a `Last-Event-ID` of one master means
//! nothing to another). The background task stops when the stream is dropped.

use std::time::Duration;

use distribution_shared::defaults;
use distribution_shared::registry_client::RegistryClient;
use distribution_shared::wire::MembershipEvent;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, warn};

use super::failover::Masters;
use super::{ConnectError, RemoteConfig};

/// How many received events wait for the reader before the connection is read no further.
const BUFFER: usize = 256;

/// The membership events of the master at `master` (`host:port` or `http://host:port`, or a
/// comma-separated list of masters to fail over in) from now on, as a stream that reconnects by itself (see the module docs). Fails at once only on an
/// invalid address or TLS settings; an unreachable master is retried.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use distribution_client::remote::{self, RemoteConfig};
/// use futures::StreamExt;
/// let mut events = remote::events("10.0.0.5:3000", &RemoteConfig::default())?;
/// while let Some(event) = events.next().await {
///     println!("{:?} {} {} ({})", event.kind, event.node, event.addr, event.reason);
/// }
/// # Ok(()) }
/// ```
pub fn events(
    master: &str,
    config: &RemoteConfig,
) -> Result<impl Stream<Item = MembershipEvent> + Send + 'static, ConnectError> {
    events_after(master, config, None)
}

/// [`events`] resuming after index `after` (`Some(0)`: the master's whole bounded history).
pub fn events_after(
    master: &str,
    config: &RemoteConfig,
    after: Option<u64>,
) -> Result<impl Stream<Item = MembershipEvent> + Send + 'static, ConnectError> {
    let config = config.clone().with_one_secret();
    let masters = Masters::new(config.registries(master)?, config.retry_backoff());
    let (tx, rx) = mpsc::channel(BUFFER);
    // Capped at a year (`Duration::MAX` as "never" must not overflow the clock).
    let idle = config.events_idle_timeout.min(defaults::MAX_DEADLINE);
    tokio::spawn(follow(masters, after, idle, tx));
    Ok(ReceiverStream::new(rx))
}

/// Reads the event stream, reconnecting, until the receiver is dropped.
async fn follow(
    mut masters: Masters<RegistryClient>,
    mut last: Option<u64>,
    idle: Duration,
    tx: mpsc::Sender<MembershipEvent>,
) {
    let mut outage = false;
    loop {
        let registry = masters.current().clone();
        let url = registry.events_url();
        let response = tokio::select! {
            _ = tx.closed() => return,
            response = registry.events(last) => response,
        };
        let failure = match response {
            Ok(response) => {
                if outage {
                    debug!(url = %url, "event stream back");
                    outage = false;
                }
                masters.succeeded();
                // Every chunk, keep-alive comments included, must come within `idle`: the
                // parser below does not show comments, so the bound is on the bytes.
                let bytes =
                    tokio_stream::StreamExt::timeout(response.bytes_stream(), idle).map(|chunk| {
                        match chunk {
                            Ok(Ok(bytes)) => Ok(bytes),
                            Ok(Err(err)) => Err(err.to_string()),
                            Err(_) => Err(format!("no event nor keep-alive for {idle:?}")),
                        }
                    });
                let mut events = Box::pin(bytes.eventsource());
                loop {
                    let next = tokio::select! {
                        _ = tx.closed() => return,
                        next = events.next() => next,
                    };
                    let message = match next {
                        Some(Ok(message)) => message,
                        Some(Err(err)) => break err.to_string(),
                        None => break "the stream ended".to_owned(),
                    };
                    if message.event == "lost" {
                        warn!(url = %url, "events were lost: the master's history no longer holds them");
                        continue;
                    }
                    let Ok(event) = serde_json::from_str::<MembershipEvent>(&message.data) else {
                        continue; // a kind this version does not know
                    };
                    last = Some(event.index);
                    if tx.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => err.to_string(),
        };
        let pause: Duration = masters.failed();
        if masters.len() > 1 {
            // Another master's indices are not this one's: from now on, on the next master.
            last = None;
        }
        if !outage {
            warn!(url = %url, error = %failure, next = %masters.current().events_url(),
                "event stream interrupted; reconnecting");
            outage = true;
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}
