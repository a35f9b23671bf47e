//! Applying what other instances tell about a room they share with this one
//! (`docs/cluster.md`). Each instance decides the changes to its own members and tells the
//! others; the others apply them here with the same rules (the next host is the member
//! with the lowest join order), so every mirror agrees without further coordination.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::member::{Location, Member};
use super::{Closure, Env, State};
use crate::broker::{Event, Op, Store, WireMember, WireStatus};
use crate::protocol::{LeaveReason, PeerData, Presence, ServerMessage};

impl State {
    /// Applies one event another instance told about this room (with its frame, for relays
    /// and broadcasts).
    pub fn apply(
        &mut self,
        event: Event,
        frame: Option<Utf8Bytes>,
        env: &Env,
        now: Instant,
    ) -> Option<Closure> {
        match event {
            Event::Joined { member, .. } => self.merge_remote(&member, env),
            Event::Hello { members, .. } => {
                for m in &members {
                    self.merge_remote(m, env);
                }
            }
            Event::Left { user, reason, .. } => {
                let i = self
                    .position_of_user(&user)
                    .filter(|i| !self.members[*i].is_local())?;
                return self.remove(i, reason, env, now);
            }
            Event::Status { user, status, .. } => self.remote_status(&user, status),
            Event::Moved {
                user,
                instance,
                name,
                ..
            } => {
                let i = self.position_of_user(&user)?;
                let member = &mut self.members[i];
                member.relocate(Location::Remote {
                    instance: instance.as_str().into(),
                    reconnecting: false,
                });
                member.user_name = name;
                self.announce_reconnected(&user, None);
            }
            Event::Closed { reason, .. } => return Some(self.close(reason, false, env)),
            Event::Relay { to, .. } => match frame {
                Some(frame) => self.deliver(&to, &frame, now),
                None => self.last_activity = now,
            },
            Event::Broadcast { from, presence, .. } => {
                if let (Some(p), Some(m)) = (
                    presence,
                    self.members.iter_mut().find(|m| *m.user_id == *from),
                ) {
                    m.presence = p;
                }
                if let Some(frame) = frame {
                    self.send_all(&frame, None);
                }
                self.last_activity = now;
            }
            Event::Activity { .. } => self.last_activity = now,
            Event::YjsPublish { .. } => {}
        }
        None
    }

    fn remote_status(&mut self, user: &str, status: WireStatus) {
        let Some(m) = self
            .members
            .iter_mut()
            .find(|m| *m.user_id == *user && !m.is_local())
        else {
            return;
        };
        if let Location::Remote { reconnecting, .. } = &mut m.location {
            *reconnecting = status == WireStatus::Reconnecting;
        }
        match status {
            WireStatus::Active => m.presence = Presence::Active,
            WireStatus::Idle => m.presence = Presence::Idle,
            WireStatus::Reconnecting => {}
        }
    }

    /// A member another instance holds: new here (`peer-joined`), or a place of ours taken
    /// over there (our connection is replaced, the others see `peer-reconnected`).
    fn merge_remote(&mut self, w: &WireMember, env: &Env) {
        if **env.broker.instance() == *w.instance {
            return;
        }
        let remote = Location::Remote {
            instance: w.instance.as_str().into(),
            reconnecting: w.status == WireStatus::Reconnecting,
        };
        match self.position_of_user(&w.user) {
            Some(i) if self.members[i].is_local() => {
                self.members[i].relocate(remote);
                self.announce_reconnected(&w.user, None);
            }
            Some(i) => self.members[i].location = remote,
            None => {
                let i = self.insert_sorted(Member::from_wire(w));
                self.next_order = self.next_order.max(w.order + 1);
                self.empty_since = None;
                let info = self.members[i].info(self.host_id.as_ref());
                let frame: Utf8Bytes = ServerMessage::PeerJoined {
                    from: &w.user,
                    user_id: &w.user,
                    room_id: &self.id,
                    data: PeerData {
                        peer: &info,
                        reason: None,
                    },
                }
                .encode()
                .into();
                self.send_all(&frame, None);
            }
        }
    }

    /// Removes every member held by the dead `instance`, as if their connections had
    /// dropped and their grace had run out, and has the cluster forget them. Returns how
    /// many, and how the room ended if that ended it.
    pub fn drop_instance(
        &mut self,
        instance: &str,
        env: &Env,
        now: Instant,
    ) -> (usize, Option<Closure>) {
        let mut n = 0;
        while let Some(i) = self
            .members
            .iter()
            .position(|m| m.remote_instance().is_some_and(|r| **r == *instance))
        {
            n += 1;
            env.emit(Op {
                store: Some(Store::Reap {
                    room: self.id.clone(),
                    user: self.members[i].user_id.clone(),
                    instance: Arc::from(instance),
                }),
                to: Vec::new(),
                event: None,
                frame: None,
            });
            if let Some(closure) = self.remove(i, LeaveReason::Disconnected, env, now) {
                return (n, Some(closure));
            }
        }
        (n, None)
    }

    /// This instance's members, as the cluster stores them.
    pub fn local_wire_members(&self, instance: &str) -> Vec<WireMember> {
        self.members
            .iter()
            .filter(|m| m.is_local())
            .map(|m| m.wire(instance))
            .collect()
    }
}
