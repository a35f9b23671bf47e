//! What other instances tell this one, applied to the rooms mirrored here
//! (`docs/cluster.md`): events and relays, dead instances, and the local state written
//! back after Redis lost it.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{lock, Registry};
use crate::broker::{Event, Grant, WireMember};
use crate::room::{Room, State};

/// A room's local members and settings, for re-publishing after a Redis outage.
#[derive(Debug, Clone)]
pub struct LocalRoom {
    /// Room id.
    pub room_id: Arc<str>,
    /// What Redis needs to recreate the room.
    pub grant: Grant,
    /// This instance's members.
    pub members: Vec<WireMember>,
}

impl Registry {
    /// A relay from another instance: hands `frame` to the local member `to` of `room_id`
    /// (the relay path of [`Registry::apply`], without building an event).
    pub fn deliver(&self, room_id: &str, to: &str, frame: &Utf8Bytes) {
        let Some(room) = lock(&self.index).rooms.get(room_id).cloned() else {
            return;
        };
        let mut st = room.lock();
        if st.closed().is_none() {
            st.deliver(to, frame, Instant::now());
        }
    }

    /// Applies what another instance told us.
    pub fn apply(&self, event: Event, frame: Option<Utf8Bytes>) {
        let now = Instant::now();
        if let Event::YjsPublish { room } = &event {
            if let Some(fields) = frame {
                let (delivered, bytes) = self.topics.publish(room, fields.as_str());
                self.stats
                    .count_relayed(crate::stats::yjs_index(), delivered, bytes as u64);
            }
            return;
        }
        let room = {
            let mut index = lock(&self.index);
            match index.rooms.get(event.room()).cloned() {
                Some(r) => r,
                // A member joined a room we have no mirror of (yet): keep one briefly, our
                // own join may be on its way.
                None if matches!(event, Event::Joined { .. } | Event::Hello { .. }) => {
                    let id: Arc<str> = event.room().into();
                    let room = Room::new(State::mirror(id.clone(), &self.config, &self.clock, now));
                    index.rooms.insert(id, room.clone());
                    room
                }
                None => return,
            }
        };
        let mut st = room.lock();
        if st.closed().is_some() {
            return;
        }
        let closure = st.apply(event, frame, &self.env(), now);
        self.settle(&room, st, closure, now);
    }

    /// Removes every member held by a dead instance, as if its connections had dropped and
    /// their grace had run out. Returns how many.
    pub fn drop_instance(&self, instance: &str) -> usize {
        let now = Instant::now();
        let mut n = 0;
        for room in self.all_rooms() {
            let mut st = room.lock();
            let (dropped, closure) = st.drop_instance(instance, &self.env(), now);
            n += dropped;
            self.settle(&room, st, closure, now);
        }
        n
    }

    /// Instances holding members of rooms mirrored here.
    pub fn remote_instances(&self) -> BTreeSet<Arc<str>> {
        let mut out = BTreeSet::new();
        for room in self.all_rooms() {
            out.extend(room.lock().remote_instances());
        }
        out
    }

    /// Every room with local members, for re-publishing after Redis lost its state.
    pub fn local_rooms(&self) -> Vec<LocalRoom> {
        let instance = self.broker.instance().clone();
        self.all_rooms()
            .into_iter()
            .filter_map(|room| {
                let st = room.lock();
                if st.closed().is_some() || st.local_members() == 0 {
                    return None;
                }
                Some(LocalRoom {
                    room_id: room.id.clone(),
                    grant: st.grant(&self.clock),
                    members: st.local_wire_members(&instance),
                })
            })
            .collect()
    }
}
