//! Joins checked and recorded cluster-wide in one script.

use std::collections::HashMap;

use super::records::{code_of, grant_of, parse_hash, parse_members};
use super::{members_key, room_key, tomb_key, RedisCluster, KEY_TTL, ROOMS_KEY};
use crate::broker::{Grant, JoinRequest, WireMember};
use crate::error::ErrorCode;
use crate::time::now_ms;

impl RedisCluster {
    pub(super) async fn join_in_redis(&self, req: JoinRequest) -> Result<Option<Grant>, ErrorCode> {
        if !self.is_healthy() {
            return Ok(None);
        }
        let Some(registry) = self.registry() else {
            return Ok(None);
        };
        let cfg = registry.config();
        let create = req.create.as_ref();
        let mut inv = self.scripts.join.key(room_key(&req.room_id));
        inv.key(members_key(&req.room_id))
            .key(ROOMS_KEY)
            .key(tomb_key(&req.room_id));
        inv.arg(&*req.room_id)
            .arg(&*req.user_id)
            .arg(&*self.instance)
            .arg(&req.user_name)
            .arg(now_ms())
            .arg(if create.is_some() { "1" } else { "0" })
            .arg(cfg.max_rooms)
            .arg(cfg.max_peers_per_room)
            .arg(create.map(|c| c.name.as_str()).unwrap_or(""))
            .arg(
                create
                    .map(|c| c.max_peers)
                    .unwrap_or(cfg.max_peers_per_room),
            )
            .arg(
                create
                    .and_then(|c| c.ttl)
                    .map(|t| t.as_secs().to_string())
                    .unwrap_or_default(),
            )
            .arg(if create.is_some_and(|c| c.destroy_on_host_leave) {
                "1"
            } else {
                "0"
            })
            .arg(if req.password_ok { "1" } else { "0" })
            .arg(KEY_TTL.as_millis() as u64)
            .arg(if req.refuse_new_rooms { "1" } else { "0" });
        let out: Vec<redis::Value> = match inv.invoke_async(&mut self.conn.clone()).await {
            Ok(v) => v,
            // Redis went away between health checks: decide locally.
            Err(_) => return Ok(None),
        };
        let head = out
            .first()
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default();
        if head != "OK" {
            let code = out
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .unwrap_or_default();
            return Err(code_of(&code));
        }
        let me: WireMember = out
            .get(1)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .and_then(|j| serde_json::from_str(&j).ok())
            .ok_or(ErrorCode::InvalidInput)?;
        let room = match out.get(2) {
            Some(redis::Value::Array(values)) => parse_hash(values),
            _ => HashMap::new(),
        };
        let members = match out.get(3) {
            Some(redis::Value::Array(values)) => parse_members(values),
            _ => Vec::new(),
        };
        let previous = out
            .get(4)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .filter(|p| !p.is_empty() && *p != *self.instance);
        Ok(Some(grant_of(
            &room,
            members,
            &me,
            cfg.max_peers_per_room,
            previous,
        )))
    }
}
