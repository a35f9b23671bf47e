//! `/yjs`: the y-webrtc signaling protocol (SPEC section 10), so an unmodified `y-webrtc`
//! client can find its peers through Switchboard.
//!
//! The protocol is the reference server's (`y-webrtc/bin/server.js`): JSON text frames
//! `subscribe` / `unsubscribe` with `topics: [..]`, `publish` with a `topic` and opaque
//! fields, fanned out to every subscriber of the topic *including the sender* with a
//! `clients` field (the subscriber count) added, and `ping` answered with `pong`. Nothing
//! else is ever sent: no errors, no native heartbeats, which the y-webrtc client would not
//! understand. What differs from the reference is the admission: the token in `?token=` is
//! checked during the upgrade, and a connection may use only the topic equal to its
//! token's room; other topics are ignored and counted as rejected (`room_mismatch`).
//!
//! Connections here are ordinary [`Conn`]s from [`Registry::open_conn`](crate::Registry),
//! so the connection limits, draining, heartbeat pings and `PEER_TIMEOUT_SECONDS` cover
//! them as they cover `/ws`; the rate limit and `MAX_MESSAGE_BYTES` apply per connection
//! in the same way. Topics themselves are the registry's ([`crate::topics`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::conn::{Conn, KillReason};
use crate::connection::{finish, write_loop, TokenBucket, WindowCounter, GARBAGE_LIMIT};
use crate::error::ErrorCode;
use crate::server::{Io, Shared};
use crate::stats::yjs_index;
use crate::time::now_ms;
use switchboard_auth::Claims;

/// Whether the reader loop goes on after a message.
enum Flow {
    Continue,
    Close(KillReason),
}

struct Session {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// The only topic this connection may use: its token's room.
    room: Arc<str>,
    subscribed: bool,
    bucket: TokenBucket,
    refusals: WindowCounter,
    garbage: WindowCounter,
}

/// Runs an authenticated `/yjs` connection to its end.
pub(crate) async fn run(
    shared: Arc<Shared>,
    ws: WebSocketStream<Io>,
    conn: Arc<Conn>,
    claims: Claims,
) {
    conn.set_native(false);
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(sink, conn.clone()));
    let cfg = shared.registry.config();
    let now = Instant::now();
    let mut session = Session {
        shared: shared.clone(),
        conn: conn.clone(),
        room: claims.room.into(),
        subscribed: false,
        bucket: TokenBucket::new(cfg.rate_limit_per_second, cfg.rate_limit_burst, now),
        refusals: WindowCounter::new(now),
        garbage: WindowCounter::new(now),
    };
    shared.stats.authenticated.fetch_add(1, Relaxed);

    loop {
        tokio::select! {
            biased;
            _ = conn.killed() => break,
            frame = stream.next() => {
                let flow = match frame {
                    Some(Ok(msg)) => {
                        conn.touch(now_ms());
                        match msg {
                            Message::Text(text) => session.on_text(&text),
                            // The reference server parses binary frames as JSON too.
                            Message::Binary(bytes) => match std::str::from_utf8(&bytes) {
                                Ok(text) => session.on_text(text),
                                Err(_) => session.garbage(),
                            },
                            Message::Close(_) => break,
                            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
                        }
                    }
                    Some(Err(WsError::Capacity(_))) => {
                        shared.stats.count_too_big();
                        Flow::Close(KillReason::TooBig)
                    }
                    Some(Err(_)) | None => break,
                };
                if let Flow::Close(reason) = flow {
                    conn.terminate(reason);
                    break;
                }
            }
        }
    }

    if session.subscribed {
        shared.registry.yjs_unsubscribe(&session.room, conn.id);
    }
    shared.stats.authenticated.fetch_sub(1, Relaxed);
    finish(&shared, &conn, stream, writer).await;
}

/// The string entries of a `topics` array; anything else in it is skipped, as the
/// reference server does.
fn topic_list(raw: Option<&&RawValue>) -> Vec<String> {
    raw.and_then(|r| serde_json::from_str::<Vec<serde_json::Value>>(r.get()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn string_field(raw: Option<&&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
}

/// A decoded `/yjs` frame.
#[derive(Debug)]
pub enum YjsMessage<'a> {
    /// `subscribe` with the string entries of `topics`.
    Subscribe(Vec<String>),
    /// `unsubscribe` with the string entries of `topics`.
    Unsubscribe(Vec<String>),
    /// `publish`: its `topic` (if a string) and every field, values verbatim.
    Publish {
        /// The topic, when it is a string.
        topic: Option<String>,
        /// Every field of the frame (values as raw JSON).
        fields: BTreeMap<String, &'a RawValue>,
    },
    /// `ping`.
    Ping,
    /// Any other `type` (ignored, as the reference server does).
    Other,
}

/// The frame is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAnObject;

/// Decodes one `/yjs` frame in one parse: field names owned, every value kept verbatim for
/// the fan-out. Pure, so it can be fuzzed.
pub fn decode(text: &str) -> Result<YjsMessage<'_>, NotAnObject> {
    let fields =
        serde_json::from_str::<BTreeMap<String, &RawValue>>(text).map_err(|_| NotAnObject)?;
    Ok(match string_field(fields.get("type")).as_deref() {
        Some("subscribe") => YjsMessage::Subscribe(topic_list(fields.get("topics"))),
        Some("unsubscribe") => YjsMessage::Unsubscribe(topic_list(fields.get("topics"))),
        Some("publish") => YjsMessage::Publish {
            topic: string_field(fields.get("topic")),
            fields,
        },
        Some("ping") => YjsMessage::Ping,
        _ => YjsMessage::Other,
    })
}

impl Session {
    /// Counts a frame that is not a JSON object; too many close the connection.
    fn garbage(&mut self) -> Flow {
        self.shared.stats.count_rejected(ErrorCode::InvalidMessage);
        if self.garbage.hit(Instant::now()) >= GARBAGE_LIMIT {
            return Flow::Close(KillReason::Policy);
        }
        Flow::Continue
    }

    fn on_text(&mut self, text: &str) -> Flow {
        let now = Instant::now();
        if !self.bucket.allow(now) {
            // The protocol has no error message: the frame is dropped and counted.
            self.shared.stats.count_rejected(ErrorCode::RateLimited);
            if self.refusals.hit(now) > self.shared.registry.config().rate_limit_burst {
                return Flow::Close(KillReason::Policy);
            }
            return Flow::Continue;
        }
        let message = match decode(text) {
            Ok(m) => m,
            Err(NotAnObject) => return self.garbage(),
        };
        match message {
            YjsMessage::Subscribe(topics) => {
                for topic in topics {
                    if *topic == *self.room {
                        self.shared.registry.yjs_subscribe(&self.room, &self.conn);
                        self.subscribed = true;
                    } else {
                        self.shared.stats.count_rejected(ErrorCode::RoomMismatch);
                    }
                }
            }
            YjsMessage::Unsubscribe(topics) => {
                for topic in topics {
                    if *topic == *self.room {
                        self.shared
                            .registry
                            .yjs_unsubscribe(&self.room, self.conn.id);
                        self.subscribed = false;
                    } else {
                        self.shared.stats.count_rejected(ErrorCode::RoomMismatch);
                    }
                }
            }
            YjsMessage::Publish { topic, fields } => match topic {
                Some(topic) if *topic == *self.room => self.publish(fields),
                Some(_) => self.shared.stats.count_rejected(ErrorCode::RoomMismatch),
                None => self.shared.stats.count_rejected(ErrorCode::InvalidMessage),
            },
            YjsMessage::Ping => {
                self.conn
                    .send(&Utf8Bytes::from_static(r#"{"type":"pong"}"#));
            }
            // Like the reference server, anything else is ignored.
            YjsMessage::Other => self.shared.stats.count_rejected(ErrorCode::UnknownType),
        }
        Flow::Continue
    }

    fn publish(&self, mut fields: BTreeMap<String, &RawValue>) {
        // A sender's own `clients` is replaced, as the reference server overwrites it.
        fields.remove("clients");
        // A map of strings to valid JSON values always serializes.
        let fields = serde_json::to_string(&fields).expect("JSON object serializes");
        let (delivered, bytes) = self.shared.registry.yjs_publish(&self.room, fields);
        self.shared
            .stats
            .count_relayed(yjs_index(), delivered, bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_like_the_reference_server_reads_them() {
        assert!(
            matches!(decode(r#"{"type":"subscribe","topics":["a",1]}"#), Ok(YjsMessage::Subscribe(t)) if t == ["a"])
        );
        assert!(matches!(decode(r#"{"type":"ping"}"#), Ok(YjsMessage::Ping)));
        assert!(matches!(
            decode(r#"{"type":"dance"}"#),
            Ok(YjsMessage::Other)
        ));
        assert!(matches!(decode(r#"{}"#), Ok(YjsMessage::Other)));
        assert_eq!(decode("[1]").unwrap_err(), NotAnObject);
        assert_eq!(decode("nope").unwrap_err(), NotAnObject);
        let Ok(YjsMessage::Publish { topic, fields }) =
            decode(r#"{"type":"publish","topic":"r","data":{"x" : 1.50}}"#)
        else {
            panic!()
        };
        assert_eq!(topic.as_deref(), Some("r"));
        assert_eq!(fields["data"].get(), r#"{"x" : 1.50}"#);
        let Ok(YjsMessage::Publish { topic, .. }) = decode(r#"{"type":"publish","topic":5}"#)
        else {
            panic!()
        };
        assert_eq!(topic, None);
    }

    #[test]
    fn topics_keep_only_strings() {
        let raw: &RawValue = serde_json::from_str(r#"["a", 1, null, "b"]"#).unwrap();
        assert_eq!(topic_list(Some(&raw)), vec!["a", "b"]);
        assert!(topic_list(None).is_empty());
    }
}
