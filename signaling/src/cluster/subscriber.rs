//! The subscriber: this instance's channel, decoded and applied to the registry.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{channel, wire, RedisCluster};

impl RedisCluster {
    pub(super) async fn subscribe_loop(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(100);
        let mut subscribed_before = false;
        let mut warned = false;
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut pubsub) => {
                    if pubsub.subscribe(channel(&self.instance)).await.is_ok() {
                        backoff = Duration::from_millis(100);
                        if subscribed_before {
                            // Whatever was sent to us while we were away is lost: exchange
                            // state again now that we can hear the answers.
                            self.resync().await;
                        }
                        subscribed_before = true;
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            let payload = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
                            match (wire::decode(&payload), self.registry()) {
                                (Ok(records), Some(registry)) => {
                                    for record in records {
                                        match record {
                                            wire::Record::Relay {
                                                room,
                                                to,
                                                frame: Some(frame),
                                            } => registry.deliver(room, to, &frame),
                                            other => {
                                                let (event, frame) = other.into_event();
                                                registry.apply(event, frame);
                                            }
                                        }
                                    }
                                }
                                (Err(e), _) if !warned => {
                                    warned = true;
                                    tracing::warn!(
                                        error = ?e,
                                        "cluster message dropped (another version, or damaged); \
                                         further ones are dropped without a log line"
                                    );
                                }
                                _ => {}
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cluster subscribe failed"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
