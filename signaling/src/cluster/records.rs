//! Reading what Redis answers: hashes, members, error codes, a join's grant.

use std::collections::HashMap;

use crate::broker::{Grant, WireMember};
use crate::error::ErrorCode;
use crate::time::now_ms;

pub(super) fn parse_hash(values: &[redis::Value]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in values.chunks(2) {
        if let [k, v] = pair {
            if let (Ok(k), Ok(v)) = (
                redis::from_redis_value_ref::<String>(k),
                redis::from_redis_value_ref::<String>(v),
            ) {
                out.insert(k, v);
            }
        }
    }
    out
}

pub(super) fn parse_members(values: &[redis::Value]) -> Vec<WireMember> {
    let mut out: Vec<WireMember> = parse_hash(values)
        .into_values()
        .filter_map(|json| serde_json::from_str(&json).ok())
        .collect();
    out.sort_by_key(|m| m.order);
    out
}

pub(super) fn code_of(s: &str) -> ErrorCode {
    match s {
        "ROOM_CLOSED" => ErrorCode::RoomClosed,
        "ROOM_EXISTS" => ErrorCode::RoomExists,
        "ROOM_FULL" => ErrorCode::RoomFull,
        "TOO_MANY_ROOMS" => ErrorCode::TooManyRooms,
        "INVALID_PASSWORD" => ErrorCode::InvalidPassword,
        _ => ErrorCode::InvalidInput,
    }
}

pub(super) fn opt(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

pub(super) fn grant_of(
    room: &HashMap<String, String>,
    members: Vec<WireMember>,
    me: &WireMember,
    default_max: usize,
    previous_instance: Option<String>,
) -> Grant {
    Grant {
        name: room.get("name").cloned().unwrap_or_default(),
        host: opt(room.get("host")).map(str::to_owned),
        host_name: opt(room.get("hostName")).map(str::to_owned),
        created_at: room
            .get("created")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(now_ms),
        max_peers: room
            .get("maxPeers")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default_max),
        expires_at: opt(room.get("expires")).and_then(|v| v.parse().ok()),
        ttl_seconds: opt(room.get("ttl")).and_then(|v| v.parse().ok()),
        destroy_on_host_leave: room.get("dohl").is_some_and(|v| v == "1"),
        has_password: opt(room.get("pw")).is_some(),
        order: me.order,
        connected_at: me.connected_at,
        previous_instance,
        members,
    }
}
