//! What instances send each other on their channels.
//!
//! One channel message carries a batch: a version byte, then records, each an event and
//! the frame it carries (if any). Under load the publisher packs everything it has for an
//! instance into one message, so Redis parses one `PUBLISH` and the receiver one pub/sub
//! message for many relays. Relays, nearly all the traffic, get a compact binary header;
//! the other events are JSON. Lengths are big-endian.
//!
//! ```text
//! message := VERSION record*
//! record  := b'R' u16 room_len room u16 to_len to frame     (Event::Relay)
//!          | b'E' u32 json_len json frame                    (any other event)
//! frame   := u32 len bytes                                   (len = u32::MAX: none)
//! ```
//!
//! Every instance of a cluster runs the same version: a message with another version byte
//! is dropped (and logged by the receiver).

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::broker::Event;

/// Format version, the first byte of every message.
pub const VERSION: u8 = 1;
/// A batch is sent once it grows past this many bytes (a record is never split).
pub const MAX_MESSAGE: usize = 256 * 1024;

const RELAY: u8 = b'R';
const JSON: u8 = b'E';
const NO_FRAME: u32 = u32::MAX;

/// A batch being filled for one instance.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self { buf: vec![VERSION] }
    }

    /// Whether no record was added since the last [`Batch::clear`].
    pub fn is_empty(&self) -> bool {
        self.buf.len() == 1
    }

    /// Whether the batch is big enough to send now.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= MAX_MESSAGE
    }

    /// Appends one event and its frame.
    pub fn push(&mut self, event: &Event, frame: Option<&Utf8Bytes>) {
        let frame_len = frame.map_or(0, |f| f.len());
        match event {
            Event::Relay { room, to } if room.len() <= 0xFFFF && to.len() <= 0xFFFF => {
                self.buf
                    .reserve(1 + 2 + room.len() + 2 + to.len() + 4 + frame_len);
                self.buf.push(RELAY);
                self.buf
                    .extend_from_slice(&(room.len() as u16).to_be_bytes());
                self.buf.extend_from_slice(room.as_bytes());
                self.buf.extend_from_slice(&(to.len() as u16).to_be_bytes());
                self.buf.extend_from_slice(to.as_bytes());
            }
            _ => {
                let json = serde_json::to_vec(event).unwrap_or_default();
                self.buf.reserve(1 + 4 + json.len() + 4 + frame_len);
                self.buf.push(JSON);
                self.buf
                    .extend_from_slice(&(json.len() as u32).to_be_bytes());
                self.buf.extend_from_slice(&json);
            }
        }
        match frame {
            Some(f) => {
                self.buf.extend_from_slice(&(f.len() as u32).to_be_bytes());
                self.buf.extend_from_slice(f.as_bytes());
            }
            None => self.buf.extend_from_slice(&NO_FRAME.to_be_bytes()),
        }
    }

    /// The message so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Starts over empty, keeping the buffer (unless a burst made it outsized).
    pub fn clear(&mut self) {
        self.buf.truncate(1);
        if self.buf.capacity() > 2 * MAX_MESSAGE {
            self.buf.shrink_to(MAX_MESSAGE);
        }
    }
}

/// Why a message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Sent by an instance running another format version.
    Version(u8),
    /// Truncated, or a field is not what its tag says.
    Garbled,
}

/// One record of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    /// A relay (`Event::Relay`), with its room and target borrowed from the message.
    Relay {
        /// Room id.
        room: &'a str,
        /// Target userId.
        to: &'a str,
        /// The frame to deliver.
        frame: Option<Utf8Bytes>,
    },
    /// Any other event.
    Event(Event, Option<Utf8Bytes>),
}

impl Record<'_> {
    /// The record as an owned event and its frame.
    pub fn into_event(self) -> (Event, Option<Utf8Bytes>) {
        match self {
            Record::Relay { room, to, frame } => (
                Event::Relay {
                    room: room.to_owned(),
                    to: to.to_owned(),
                },
                frame,
            ),
            Record::Event(event, frame) => (event, frame),
        }
    }
}

/// Reads a whole message: every record, or an error and nothing. Frames are slices of
/// `payload`, not copies; relays borrow their room and target from it.
pub fn decode(payload: &Bytes) -> Result<Vec<Record<'_>>, Malformed> {
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    match r.u8()? {
        VERSION => {}
        other => return Err(Malformed::Version(other)),
    }
    let mut records = Vec::with_capacity(16);
    while r.at < payload.len() {
        let head = match r.u8()? {
            RELAY => {
                let room = r.str16()?;
                let to = r.str16()?;
                Ok((room, to))
            }
            JSON => {
                let len = r.u32()? as usize;
                let event: Event =
                    serde_json::from_slice(r.bytes(len)?).map_err(|_| Malformed::Garbled)?;
                Err(event)
            }
            _ => return Err(Malformed::Garbled),
        };
        let frame = match r.u32()? {
            NO_FRAME => None,
            len => {
                let start = r.at;
                r.bytes(len as usize)?;
                let bytes = payload.slice(start..r.at);
                Some(Utf8Bytes::try_from(bytes).map_err(|_| Malformed::Garbled)?)
            }
        };
        records.push(match head {
            Ok((room, to)) => Record::Relay { room, to, frame },
            Err(event) => Record::Event(event, frame),
        });
    }
    Ok(records)
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed::Garbled)?;
        let out = self.buf.get(self.at..end).ok_or(Malformed::Garbled)?;
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.bytes(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str16(&mut self) -> Result<&'a str, Malformed> {
        let b = self.bytes(2)?;
        let len = u16::from_be_bytes([b[0], b[1]]) as usize;
        std::str::from_utf8(self.bytes(len)?).map_err(|_| Malformed::Garbled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LeaveReason;

    fn round_trip(records: &[(Event, Option<Utf8Bytes>)]) -> Vec<(Event, Option<Utf8Bytes>)> {
        let mut batch = Batch::new();
        for (event, frame) in records {
            batch.push(event, frame.as_ref());
        }
        let payload = Bytes::copy_from_slice(batch.as_bytes());
        decode(&payload)
            .unwrap()
            .into_iter()
            .map(Record::into_event)
            .collect()
    }

    #[test]
    fn a_batch_keeps_every_record_in_order_and_frames_byte_identical() {
        let offer: Utf8Bytes =
            "{\"type\":\"sdp-offer\",\"data\":{\"sdp\":\"v=0\\r\\n\u{e9}\"}}".into();
        let records = vec![
            (
                Event::Relay {
                    room: "r1".into(),
                    to: "u2".into(),
                },
                Some(offer.clone()),
            ),
            (Event::Activity { room: "r1".into() }, None),
            (
                Event::Left {
                    room: "r1".into(),
                    user: "u\n3".into(),
                    reason: LeaveReason::Left,
                },
                None,
            ),
            (
                Event::Broadcast {
                    room: "r1".into(),
                    from: "u1".into(),
                    presence: None,
                },
                Some("{}".into()),
            ),
            (
                Event::Relay {
                    room: String::new(),
                    to: "\u{1f600}".into(),
                },
                Some(Utf8Bytes::from_static("")),
            ),
        ];
        assert_eq!(round_trip(&records), records);
        assert_eq!(round_trip(&[]), vec![]);
    }

    #[test]
    fn clear_starts_an_empty_batch() {
        let mut batch = Batch::new();
        assert!(batch.is_empty());
        batch.push(&Event::Activity { room: "r".into() }, None);
        assert!(!batch.is_empty());
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(
            decode(&Bytes::copy_from_slice(batch.as_bytes())),
            Ok(vec![])
        );
        batch.push(&Event::Activity { room: "s".into() }, None);
        assert_eq!(
            decode(&Bytes::copy_from_slice(batch.as_bytes())),
            Ok(vec![Record::Event(
                Event::Activity { room: "s".into() },
                None
            )])
        );
    }

    #[test]
    fn foreign_versions_and_damage_are_refused_whole() {
        let mut batch = Batch::new();
        batch.push(
            &Event::Relay {
                room: "r".into(),
                to: "u".into(),
            },
            Some(&"{\"type\":\"sdp-answer\"}".into()),
        );
        let good = batch.as_bytes().to_vec();
        let mut other = good.clone();
        other[0] = VERSION + 1;
        assert_eq!(
            decode(&Bytes::from(other)),
            Err(Malformed::Version(VERSION + 1))
        );
        for cut in 2..good.len() {
            assert_eq!(
                decode(&Bytes::from(good[..cut].to_vec())),
                Err(Malformed::Garbled),
                "cut at {cut}"
            );
        }
        let mut bad_utf8 = good.clone();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xFF;
        assert_eq!(decode(&Bytes::from(bad_utf8)), Err(Malformed::Garbled));
        assert_eq!(decode(&Bytes::new()), Err(Malformed::Garbled));
        assert_eq!(
            decode(&Bytes::from_static(b"\x01Zxx")),
            Err(Malformed::Garbled)
        );
    }
}
