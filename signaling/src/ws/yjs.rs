//! `/yjs`: the y-webrtc signaling protocol (`docs/yjs.md`), so an unmodified `y-webrtc`
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
//! run by the same reader as `/ws` ([`crate::ws::reader`]), so the connection limits,
//! draining, heartbeat pings, `PEER_TIMEOUT_SECONDS`, the rate limit and
//! `MAX_MESSAGE_BYTES` cover them as they cover `/ws`. Topics themselves are the
//! registry's ([`crate::topics`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::conn::{Conn, KillReason};
use crate::error::ErrorCode;
use crate::stats::yjs_index;
use crate::ws::reader::{Flow, Protocol};
use crate::ws::Shared;
use switchboard_auth::Claims;

/// One `/yjs` connection's session.
pub(crate) struct Session {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    /// The only topic this connection may use: its token's room.
    room: Arc<str>,
    subscribed: bool,
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
    /// A session for `conn`, admitted by the token's `claims` during the upgrade.
    pub(crate) fn new(shared: Arc<Shared>, conn: Arc<Conn>, claims: Claims) -> Self {
        conn.set_native(false);
        shared.stats.authenticated.fetch_add(1, Relaxed);
        Self {
            shared,
            conn,
            room: claims.room.into(),
            subscribed: false,
        }
    }

    /// Counts a frame that is not a JSON object (toward the garbage limit).
    fn garbage(&self) -> Flow {
        self.shared.stats.count_rejected(ErrorCode::InvalidMessage);
        Flow::Garbage
    }

    /// Follows or leaves the topics named, as far as this connection may.
    fn subscribe(&mut self, topics: Vec<String>, subscribe: bool) {
        for topic in topics {
            if *topic != *self.room {
                self.shared.stats.count_rejected(ErrorCode::RoomMismatch);
            } else if subscribe {
                self.shared.registry.yjs_subscribe(&self.room, &self.conn);
                self.subscribed = true;
            } else {
                let registry = &self.shared.registry;
                registry.yjs_unsubscribe(&self.room, self.conn.id);
                self.subscribed = false;
            }
        }
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

impl Protocol for Session {
    async fn on_text(&mut self, text: &str, _now: Instant) -> Flow {
        let Ok(message) = decode(text) else {
            return self.garbage();
        };
        match message {
            YjsMessage::Subscribe(topics) => self.subscribe(topics, true),
            YjsMessage::Unsubscribe(topics) => self.subscribe(topics, false),
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

    /// The reference server parses binary frames as JSON too.
    fn on_binary<'a>(&mut self, bytes: &'a [u8]) -> Result<&'a str, Flow> {
        std::str::from_utf8(bytes).map_err(|_| self.garbage())
    }

    // A rate-limited frame is only dropped and counted: the protocol has no error message.

    fn teardown(self, _kill: Option<KillReason>) {
        if self.subscribed {
            self.shared
                .registry
                .yjs_unsubscribe(&self.room, self.conn.id);
        }
        self.shared.stats.authenticated.fetch_sub(1, Relaxed);
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
