//! The Lua scripts that make every cluster-wide decision atomic in Redis (one script, one
//! room, no read-then-write), and `EVAL` for using them inside pipelines.

use redis::Script;

pub(super) const JOIN_LUA: &str = r#"
local room, members, rooms, tomb = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', tomb) == 1 then return {'ERR', 'ROOM_CLOSED'} end
local exists = redis.call('EXISTS', room) == 1
if exists and ARGV[6] == '1' then return {'ERR', 'ROOM_EXISTS'} end
if not exists then
  if ARGV[15] == '1' or redis.call('SCARD', rooms) >= tonumber(ARGV[7]) then return {'ERR', 'TOO_MANY_ROOMS'} end
  local mp, name, ttl, dohl = ARGV[8], ARGV[1], '', '0'
  if ARGV[6] == '1' then mp, name, ttl, dohl = ARGV[10], ARGV[9], ARGV[11], ARGV[12] end
  redis.call('HSET', room, 'name', name, 'created', ARGV[5], 'maxPeers', mp, 'ttl', ttl, 'dohl', dohl,
    'seq', '0', 'joined', '0', 'host', '', 'hostName', '', 'pw', '', 'expires', '')
  redis.call('SADD', rooms, ARGV[1])
end
local prev = redis.call('HGET', members, ARGV[2])
local member
if not prev then
  local pw = redis.call('HGET', room, 'pw')
  if pw and pw ~= '' and ARGV[13] ~= '1' then
    return {'ERR', 'INVALID_PASSWORD'}
  end
  if redis.call('HLEN', members) >= tonumber(redis.call('HGET', room, 'maxPeers')) then return {'ERR', 'ROOM_FULL'} end
  local host = redis.call('HGET', room, 'host') or ''
  if redis.call('HGET', room, 'joined') ~= '1' then
    redis.call('HSET', room, 'joined', '1')
    local ttl = redis.call('HGET', room, 'ttl')
    if ttl and ttl ~= '' then
      redis.call('HSET', room, 'expires', string.format('%.0f', tonumber(ARGV[5]) + tonumber(ttl) * 1000))
    end
    if host == '' then redis.call('HSET', room, 'host', ARGV[2]) end
  elseif redis.call('HLEN', members) == 0 and host ~= ARGV[2] then
    redis.call('HSET', room, 'host', ARGV[2])
  end
  local order = redis.call('HINCRBY', room, 'seq', 1)
  member = cjson.encode({u = ARGV[2], n = ARGV[4], c = tonumber(ARGV[5]), o = order, i = ARGV[3], s = 'active'})
else
  local m = cjson.decode(prev)
  m.i = ARGV[3]
  m.n = ARGV[4]
  m.s = 'active'
  member = cjson.encode(m)
end
redis.call('HSET', members, ARGV[2], member)
redis.call('PEXPIRE', room, ARGV[14])
redis.call('PEXPIRE', members, ARGV[14])
local previous = ''
if prev then previous = cjson.decode(prev).i end
return {'OK', member, redis.call('HGETALL', room), redis.call('HGETALL', members), previous}
"#;

/// Removes a member if it still belongs to `instance`, and moves the host to the member
/// with the lowest join order (the same rule every mirror applies).
pub(super) const LEAVE_LUA: &str = r#"
local prev = redis.call('HGET', KEYS[2], ARGV[1])
if not prev then return 0 end
if cjson.decode(prev).i ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'host') == ARGV[1] then
  local best, bo = '', nil
  local all = redis.call('HGETALL', KEYS[2])
  for k = 1, #all, 2 do
    local o = cjson.decode(all[k + 1]).o
    if bo == nil or o < bo then bo, best = o, all[k] end
  end
  if best ~= '' then redis.call('HSET', KEYS[1], 'host', best) end
end
return 1
"#;

pub(super) const STATUS_LUA: &str = r#"
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
local m = cjson.decode(prev)
if m.i ~= ARGV[2] then return 0 end
m.s = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(m))
return 1
"#;

/// Tombstones the room; returns '1' plus its members when this call closed it.
pub(super) const CLOSE_LUA: &str = r#"
redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0'} end
local all = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
local out = {'1'}
for k = 1, #all do out[#out + 1] = all[k] end
return out
"#;

pub(super) const DELETE_IF_EMPTY_LUA: &str = r#"
if redis.call('HLEN', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

pub(super) const CREATE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return 'ROOM_CLOSED' end
if redis.call('EXISTS', KEYS[1]) == 1 then return 'ROOM_EXISTS' end
if ARGV[12] == '1' or redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[10]) then return 'TOO_MANY_ROOMS' end
redis.call('HSET', KEYS[1], 'name', ARGV[2], 'host', ARGV[3], 'hostName', ARGV[4], 'created', ARGV[5],
  'maxPeers', ARGV[6], 'ttl', ARGV[7], 'dohl', ARGV[8], 'pw', ARGV[9], 'seq', '0', 'joined', '0', 'expires', '')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[11])
return 'OK'
"#;

pub(super) const ADMIT_LUA: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return {'ERR', 'ROOM_CLOSED'} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'OK', ''} end
local pw = redis.call('HGET', KEYS[1], 'pw') or ''
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'OK', pw} end
if redis.call('HLEN', KEYS[2]) >= tonumber(redis.call('HGET', KEYS[1], 'maxPeers')) then return {'ERR', 'ROOM_FULL'} end
return {'OK', pw}
"#;

/// Writes a room and this instance's members back after Redis lost them; returns every
/// member, or 'CLOSED' when the room was closed meanwhile.
pub(super) const RESTORE_LUA: &str = r#"
if redis.call('EXISTS', KEYS[4]) == 1 then return {'CLOSED'} end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'name', ARGV[3], 'host', ARGV[4], 'hostName', ARGV[5], 'created', ARGV[6],
    'maxPeers', ARGV[7], 'ttl', ARGV[8], 'dohl', ARGV[9], 'pw', ARGV[10], 'seq', ARGV[11], 'joined', '1',
    'expires', ARGV[12])
end
redis.call('SADD', KEYS[3], ARGV[1])
for k = 13, #ARGV do
  local m = cjson.decode(ARGV[k])
  redis.call('HSET', KEYS[2], m.u, ARGV[k])
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
  if m.o > seq then redis.call('HSET', KEYS[1], 'seq', string.format('%.0f', m.o)) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local out = {'OK'}
local all = redis.call('HGETALL', KEYS[2])
for k = 1, #all do out[#out + 1] = all[k] end
return out
"#;

/// The scripts run with `EVALSHA` (loaded on first use).
pub(super) struct Scripts {
    pub(super) join: Script,
    pub(super) close: Script,
    pub(super) create: Script,
    pub(super) admit: Script,
    pub(super) restore: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            join: Script::new(JOIN_LUA),
            close: Script::new(CLOSE_LUA),
            create: Script::new(CREATE_LUA),
            admit: Script::new(ADMIT_LUA),
            restore: Script::new(RESTORE_LUA),
        }
    }
}

/// `EVAL` of a script's source, for use inside pipelines (where a missing script cache after
/// a Redis restart must not fail the batch).
pub(super) fn eval(src: &str, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd("EVAL");
    c.arg(src).arg(keys.len());
    for k in keys {
        c.arg(*k);
    }
    for a in args {
        c.arg(*a);
    }
    c
}
