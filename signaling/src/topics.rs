//! `/yjs` topics: which local connections follow which topic, and the fan-out of a publish
//! to them. Pure bookkeeping over [`Conn`] handles: the registry owns one [`Hub`] and calls
//! it for local subscribers and for publishes arriving from other instances; the `/yjs`
//! sessions reach it only through the registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::conn::{Conn, KillReason};

/// Topic → subscribed connections by id.
type Topics = HashMap<Arc<str>, HashMap<u64, Arc<Conn>>>;

/// Which connections are subscribed to which topic.
#[derive(Default)]
pub struct Hub {
    // std Mutex: every critical section is a map update or a round of non-blocking queue
    // pushes, never held across an await.
    topics: Mutex<Topics>,
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, Topics> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `conn` to `topic` (again is a no-op). Returns true when the topic had no local
    /// subscriber before.
    pub fn subscribe(&self, topic: &Arc<str>, conn: &Arc<Conn>) -> bool {
        let mut topics = self.lock();
        let subs = topics.entry(topic.clone()).or_default();
        let first = subs.is_empty();
        subs.insert(conn.id, conn.clone());
        first
    }

    /// Removes the connection `conn_id` from `topic`; a topic nobody follows is forgotten.
    /// Returns true when that removed the last local subscriber.
    pub fn unsubscribe(&self, topic: &str, conn_id: u64) -> bool {
        let mut topics = self.lock();
        if let Some(subs) = topics.get_mut(topic) {
            if subs.remove(&conn_id).is_some() && subs.is_empty() {
                topics.remove(topic);
                return true;
            }
        }
        false
    }

    /// Hands `fields` (a publish as a JSON object, without `clients`) to every subscriber
    /// of `topic`, with `clients` set to the number of subscribers here. Returns how many
    /// took it and the frame's size.
    pub fn publish(&self, topic: &str, fields: &str) -> (u64, usize) {
        let topics = self.lock();
        let Some(subs) = topics.get(topic) else {
            return (0, 0);
        };
        let frame = with_clients(fields, subs.len());
        let delivered = subs.values().filter(|c| c.send(&frame)).count() as u64;
        (delivered, frame.len())
    }

    /// Topics with at least one subscriber here.
    pub fn topics(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// Disconnects every subscriber of a topic whose room closed (4010).
    pub fn close_topic(&self, topic: &str) {
        if let Some(subs) = self.lock().remove(topic) {
            for conn in subs.values() {
                conn.terminate(KillReason::RoomClosed);
            }
        }
    }
}

/// `fields` (a JSON object) with `"clients": n` appended.
fn with_clients(fields: &str, clients: usize) -> Utf8Bytes {
    let body = fields.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body);
    let sep = if body.trim_end().ends_with('{') {
        ""
    } else {
        ","
    };
    format!("{body}{sep}\"clients\":{clients}}}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_every_subscriber_with_the_count() {
        let hub = Hub::default();
        let topic: Arc<str> = "r1".into();
        let a = Arc::new(Conn::new(1, 4, 0));
        let b = Arc::new(Conn::new(2, 4, 0));
        assert!(hub.subscribe(&topic, &a));
        assert!(!hub.subscribe(&topic, &a));
        assert!(!hub.subscribe(&topic, &b));
        let (n, len) = hub.publish("r1", r#"{"type":"publish","topic":"r1"}"#);
        assert_eq!(n, 2);
        assert_eq!(len, r#"{"type":"publish","topic":"r1","clients":2}"#.len());
        assert_eq!(hub.publish("r2", "{}"), (0, 0));
        assert!(!hub.unsubscribe("r1", 1));
        assert!(hub.unsubscribe("r1", 2));
        assert!(hub.lock().is_empty());
    }

    #[test]
    fn clients_is_appended_to_the_object() {
        assert_eq!(
            with_clients(r#"{"a":1}"#, 3).as_str(),
            r#"{"a":1,"clients":3}"#
        );
        assert_eq!(with_clients("{}", 0).as_str(), r#"{"clients":0}"#);
    }
}
