// Switchboard browser client: a dependency-free ES module for the native signaling
// protocol (HTTP token API + `/ws`). See README.md beside this file and docs/protocol.md.
//
// It fetches a room token, connects, authenticates with a first `auth` message (so a bad
// or expired token comes back as a typed error instead of a bare failed upgrade), joins,
// answers heartbeats, relays offers/answers/candidates, and reconnects with backoff inside
// the server's reconnect grace, where the server restores the place silently.

/**
 * @typedef {object} PeerInfo
 * @property {string} userId
 * @property {string} userName
 * @property {boolean} isHost
 * @property {number} connectedAt      ms since the epoch
 * @property {number} lastHeartbeat    ms since the epoch
 * @property {'active'|'idle'|'reconnecting'} status
 */

/**
 * @typedef {object} RoomMeta
 * @property {string} roomId
 * @property {string} roomName
 * @property {string|null} hostId
 * @property {number} peerCount
 * @property {number} maxPeers
 * @property {boolean} hasPassword
 * @property {'active'|'idle'|'closed'} state
 */

/**
 * @typedef {object} TokenResponse   answer of `POST /api/auth/token`
 * @property {string} token
 * @property {number} expiresAt
 * @property {number} expiresIn
 * @property {string} userId
 * @property {string} roomId
 * @property {string} signalingUrl
 * @property {RTCIceServer[]} [iceServers]
 */

/**
 * @typedef {object} Joined          what `connect()` resolves with (`room-joined` data)
 * @property {RoomMeta} room
 * @property {PeerInfo} self
 * @property {PeerInfo[]} peers
 */

/**
 * @typedef {object} ReconnectOptions
 * @property {number} [windowMs=15000]    keep trying this long after a drop (the server's
 *                                        RECONNECT_GRACE_SECONDS keeps the place meanwhile)
 * @property {number} [baseDelayMs=250]   first retry delay; doubles per attempt, with jitter
 * @property {number} [maxDelayMs=4000]   longest delay between attempts
 */

/**
 * @typedef {object} ClientOptions
 * @property {string} roomId
 * @property {string} [apiUrl]            HTTP API base, default: this page's origin
 * @property {string} [userId]            omitted: the server generates one (kept for reconnects)
 * @property {string} [userName]
 * @property {string} [password]          for password-protected rooms
 * @property {string} [token]             a token from your backend, used for the first connect
 * @property {(client: SwitchboardClient) => Promise<TokenResponse>} [getToken]
 *           how to get a fresh token (first connect without `token`, and every reconnect);
 *           default: `POST {apiUrl}/api/auth/token`
 * @property {string} [signalingUrl]      overrides the token response's `signalingUrl`
 * @property {{roomName?: string, maxPeers?: number, ttlSeconds?: number,
 *             destroyOnHostLeave?: boolean}} [create]  send `create-room` instead of `join-room`
 * @property {ReconnectOptions|false} [reconnect]
 * @property {typeof WebSocket} [WebSocket]  for tests or non-browser runtimes
 * @property {typeof fetch} [fetch]
 */

/** Close codes after which reconnecting cannot help. */
const FINAL_CLOSE_CODES = new Set([4001, 4003, 4009, 4010]);
/** Token-request errors after which reconnecting cannot help. */
const FINAL_ERROR_CODES = new Set([
  'INVALID_PASSWORD', 'ROOM_FULL', 'ROOM_CLOSED', 'ROOM_EXISTS', 'FORBIDDEN', 'UNAUTHORIZED',
  'INVALID_INPUT', 'TOKEN_EXPIRED', 'INVALID_TOKEN', 'AUTH_FAILED', 'USER_MISMATCH',
  'ROOM_MISMATCH', 'ALREADY_IN_ROOM',
]);

/**
 * An error reported by Switchboard (HTTP or signaling) or by this client.
 * `code` is the server's code (`ROOM_FULL`, `INVALID_PASSWORD`, `TOKEN_EXPIRED`, …) or one
 * of this client's: `NETWORK_ERROR`, `CONNECTION_CLOSED`, `NOT_CONNECTED`.
 */
export class SwitchboardError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{status?: number, requestId?: string, closeCode?: number, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'SwitchboardError';
    /** @type {string} */
    this.code = code;
    /** @type {number|undefined} HTTP status, for errors from the HTTP API */
    this.status = extra.status;
    /** @type {string|undefined} the request's `requestId`, for signaling errors */
    this.requestId = extra.requestId;
    /** @type {number|undefined} WebSocket close code, for `CONNECTION_CLOSED` */
    this.closeCode = extra.closeCode;
  }

  /** Whether trying again later may succeed. */
  get retryable() {
    return !FINAL_ERROR_CODES.has(this.code) && !FINAL_CLOSE_CODES.has(this.closeCode ?? 0);
  }
}

/**
 * Calls the HTTP API; answers the parsed JSON or throws a {@link SwitchboardError} made from
 * the `{"error": {"code", "message"}}` body.
 * @param {string} url
 * @param {object} [body]           JSON body (POST); omitted: GET
 * @param {{fetch?: typeof fetch, bearer?: string, method?: string}} [opts]
 */
export async function apiRequest(url, body, opts = {}) {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  /** @type {Record<string, string>} */
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.bearer) headers.Authorization = `Bearer ${opts.bearer}`;
  let res;
  try {
    res = await doFetch(url, {
      method: opts.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (cause) {
    throw new SwitchboardError('NETWORK_ERROR', `cannot reach ${url}`, { cause });
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    // Not JSON: handled below.
  }
  if (!res.ok) {
    const err = json && json.error;
    throw new SwitchboardError(
      (err && err.code) || `HTTP_${res.status}`,
      (err && err.message) || `HTTP ${res.status}`,
      { status: res.status },
    );
  }
  return json;
}

/**
 * `POST /api/auth/token`.
 * @param {string} apiUrl
 * @param {{roomId: string, userId?: string, userName?: string, password?: string}} req
 * @param {{fetch?: typeof fetch, apiKey?: string}} [opts]  `apiKey`: ISSUER_API_KEY, for backends
 * @returns {Promise<TokenResponse>}
 */
export function fetchToken(apiUrl, req, opts = {}) {
  return apiRequest(`${trimSlash(apiUrl)}/api/auth/token`, req, {
    fetch: opts.fetch,
    bearer: opts.apiKey,
  });
}

/**
 * `POST /api/rooms`: creates a room (with a password, a peer limit, a TTL…) ahead of its
 * first join. Answers the room metadata plus `hostToken`.
 * @param {string} apiUrl
 * @param {{roomId?: string, roomName?: string, hostId?: string, hostName?: string,
 *          password?: string, maxPeers?: number, ttlSeconds?: number,
 *          destroyOnHostLeave?: boolean}} req
 * @param {{fetch?: typeof fetch, apiKey?: string}} [opts]
 * @returns {Promise<RoomMeta & {hostToken: string}>}
 */
export function createRoom(apiUrl, req, opts = {}) {
  return apiRequest(`${trimSlash(apiUrl)}/api/rooms`, req, {
    fetch: opts.fetch,
    bearer: opts.apiKey,
  });
}

/** @param {string} s */
function trimSlash(s) {
  return s.replace(/\/+$/, '');
}

/** @param {number} ms */
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A connection to one Switchboard room.
 *
 * Server events are dispatched under their wire type (`peer-joined`, `peer-left`,
 * `peer-reconnected`, `sdp-offer`, `sdp-answer`, `ice-candidate`, `presence`,
 * `cursor-update`, `message`, `host-changed`, `room-closed`, `room-expiring`,
 * `server-shutdown`, `heartbeat`, `error`, …) with the whole message as the handler's
 * argument. The client adds:
 * - `joined` ({@link Joined}) after every successful join, reconnects included;
 * - `state` (`{state, previous}`), where state is `idle` | `connecting` | `joined` |
 *   `reconnecting` | `closed`;
 * - `reconnecting` (`{attempt, delayMs, error}`) before each retry;
 * - `closed` (`{code, reason, error}`) once the client has given up or was closed.
 *
 * ```js
 * const sb = new SwitchboardClient({ roomId: 'design-review', userName: 'Ada' });
 * sb.on('peer-joined', (msg) => console.log(msg.data.peer.userName, 'joined'));
 * sb.on('sdp-offer', (msg) => handleOffer(msg.from, msg.data.offer));
 * const { self, peers } = await sb.connect();
 * ```
 */
export class SwitchboardClient extends EventTarget {
  /** @param {ClientOptions} options */
  constructor(options) {
    super();
    if (!options || !options.roomId) throw new TypeError('SwitchboardClient needs a roomId');
    /** @type {ClientOptions} */
    this.options = options;
    /** Room id. */
    this.roomId = options.roomId;
    /** @type {string|undefined} user id (generated by the server when not given) */
    this.userId = options.userId;
    /** @type {RTCIceServer[]} from the token response (STUN/TURN), empty when none */
    this.iceServers = [];
    /** @type {string|undefined} */
    this.sessionId = undefined;
    /** @type {'idle'|'connecting'|'joined'|'reconnecting'|'closed'} */
    this.state = 'idle';
    /** @type {Map<string, PeerInfo>} the other members, by userId */
    this.peers = new Map();
    /** @type {RoomMeta|undefined} */
    this.room = undefined;
    /** @type {WebSocket|null} */
    this._ws = null;
    this._closedByUser = false;
    this._requestSeq = 0;
    this._pendingToken = options.token;
    /** @type {number|undefined} the last `server-shutdown`'s reconnect hint */
    this._shutdownDelay = undefined;
  }

  /**
   * Subscribes `handler` to `type`; it receives the message (or the client event's data).
   * Returns a function that unsubscribes.
   * @param {string} type
   * @param {(data: any) => void} handler
   */
  on(type, handler) {
    /** @param {Event} e */
    const listener = (e) => handler(/** @type {CustomEvent} */ (e).detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /**
   * Gets a token, connects and joins. Resolves with the join (`room-joined` data); rejects
   * with a {@link SwitchboardError} (`ROOM_FULL`, `INVALID_PASSWORD`, `TOKEN_EXPIRED`, …).
   * @returns {Promise<Joined>}
   */
  async connect() {
    if (this.state === 'connecting' || this.state === 'joined') {
      throw new SwitchboardError('ALREADY_CONNECTED', 'connect() was already called');
    }
    this._closedByUser = false;
    this._setState('connecting');
    try {
      return await this._attempt();
    } catch (err) {
      this._setState('closed');
      throw err;
    }
  }

  /** Sends an SDP offer to `peer` (a userId in the room). */
  sendOffer(peer, offer, requestId) {
    return this._send('sdp-offer', { peer, offer }, requestId);
  }

  /** Sends an SDP answer to `peer`. */
  sendAnswer(peer, answer, requestId) {
    return this._send('sdp-answer', { peer, answer }, requestId);
  }

  /** Sends an ICE candidate to `peer` (RTCIceCandidate or its JSON). */
  sendCandidate(peer, candidate, requestId) {
    const json = candidate && typeof candidate.toJSON === 'function' ? candidate.toJSON() : candidate;
    return this._send('ice-candidate', { peer, candidate: json }, requestId);
  }

  /** Broadcasts a presence change (`active` | `idle`). */
  setPresence(status) {
    return this._send('presence', { status });
  }

  /** Broadcasts any JSON, e.g. `{line, column}`. */
  sendCursor(data) {
    return this._send('cursor-update', data);
  }

  /** Broadcasts a chat message. */
  sendMessage(text) {
    return this._send('message', { text });
  }

  /** Host only: closes the room for everyone. */
  closeRoom() {
    return this._send('close-room');
  }

  /** Leaves the room for good (the others see `peer-left` with reason `left`) and disconnects. */
  leave() {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify({ type: 'leave-room' }));
    this.disconnect();
  }

  /**
   * Closes the connection without leaving: the server keeps the place for its reconnect
   * grace (a page reload does this). No reconnect follows.
   */
  disconnect() {
    this._closedByUser = true;
    const ws = this._ws;
    this._ws = null;
    if (ws) ws.close(1000, 'client closed');
    this._finish(1000, 'client closed', undefined);
  }

  // ---- internals --------------------------------------------------------------------

  /**
   * @param {string} type
   * @param {any} [data]
   * @param {string} [requestId]
   * @returns {string} the requestId sent (errors about the request echo it)
   */
  _send(type, data, requestId) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || this.state !== 'joined') {
      throw new SwitchboardError('NOT_CONNECTED', `cannot send ${type}: not in the room`);
    }
    const id = requestId ?? String(++this._requestSeq);
    /** @type {Record<string, any>} */
    const msg = { type, requestId: id };
    if (data !== undefined) msg.data = data;
    ws.send(JSON.stringify(msg));
    return id;
  }

  /** @param {string} type @param {any} detail */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {SwitchboardClient['state']} state */
  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  /** @returns {Promise<TokenResponse>} */
  async _token() {
    const o = this.options;
    if (this._pendingToken) {
      // A token handed in: its claims name the user; the server echoes them in auth-ok.
      const token = this._pendingToken;
      this._pendingToken = undefined;
      return /** @type {TokenResponse} */ ({ token, signalingUrl: o.signalingUrl, userId: o.userId });
    }
    if (o.getToken) return o.getToken(this);
    const apiUrl = o.apiUrl ?? globalThis.location.origin;
    return fetchToken(
      apiUrl,
      { roomId: this.roomId, userId: this.userId, userName: o.userName, password: o.password },
      { fetch: o.fetch },
    );
  }

  /**
   * The signaling URL when only a token was handed in: the API's `/info` names the port,
   * on the API's host.
   */
  async _signalingUrlFromInfo() {
    const apiUrl = this.options.apiUrl ?? globalThis.location.origin;
    const info = await apiRequest(`${trimSlash(apiUrl)}/info`, undefined, { fetch: this.options.fetch });
    const api = new URL(apiUrl);
    const scheme = api.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${api.hostname}:${info.signalingPort}/ws`;
  }

  /** One connection attempt: token, socket, auth, join. @returns {Promise<Joined>} */
  async _attempt() {
    const tok = await this._token();
    if (tok.userId) this.userId = tok.userId;
    if (Array.isArray(tok.iceServers)) this.iceServers = tok.iceServers;
    const url = this.options.signalingUrl ?? tok.signalingUrl ?? (await this._signalingUrlFromInfo());
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    const ws = new WS(url);
    this._ws = ws;

    return new Promise((resolve, reject) => {
      let joined = false;
      /** @type {SwitchboardError|undefined} */
      let lastError;
      const fail = (/** @type {SwitchboardError} */ err) => {
        if (joined) return;
        joined = true; // settle once
        reject(err);
      };
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: 'auth', data: { token: tok.token } }));
      };
      ws.onmessage = (ev) => {
        if (this._ws !== ws) return;
        let msg;
        try {
          msg = JSON.parse(typeof ev.data === 'string' ? ev.data : '');
        } catch {
          return;
        }
        if (!msg || typeof msg.type !== 'string') return;
        switch (msg.type) {
          case 'auth-ok': {
            const d = msg.data || {};
            this.userId = d.userId ?? this.userId;
            this.sessionId = d.sessionId;
            if (Array.isArray(d.iceServers)) this.iceServers = d.iceServers;
            const create = this.options.create;
            /** @type {Record<string, any>} */
            const data = create ? { ...create } : {};
            if (!create && this.options.userName) data.userName = this.options.userName;
            ws.send(JSON.stringify({ type: create ? 'create-room' : 'join-room', data }));
            break;
          }
          case 'room-joined': {
            const d = msg.data;
            this.room = d.room;
            this.peers = new Map(d.peers.map((/** @type {PeerInfo} */ p) => [p.userId, p]));
            if (!joined) {
              joined = true;
              this._setState('joined');
              resolve(d);
            }
            this._emit('joined', d);
            break;
          }
          case 'heartbeat':
            ws.send(JSON.stringify({ type: 'pong' }));
            break;
          case 'peer-joined':
            this.peers.set(msg.data.peer.userId, msg.data.peer);
            break;
          case 'peer-left':
            this.peers.delete(msg.from);
            break;
          case 'peer-reconnected': {
            const p = this.peers.get(msg.from);
            if (p) p.status = 'active';
            break;
          }
          case 'presence': {
            const p = this.peers.get(msg.from);
            if (p && msg.data && msg.data.status) p.status = msg.data.status;
            break;
          }
          case 'host-changed':
            for (const p of this.peers.values()) p.isHost = p.userId === msg.data.hostId;
            if (this.room) this.room.hostId = msg.data.hostId;
            break;
          case 'server-shutdown':
            this._shutdownDelay = msg.data && msg.data.reconnectAfterMs;
            break;
          case 'error': {
            const d = msg.data || {};
            const err = new SwitchboardError(d.code || 'UNKNOWN', d.message || 'error', {
              requestId: msg.requestId,
            });
            lastError = err;
            if (!joined) {
              // Authentication and join refusals end this attempt.
              fail(err);
              ws.close(1000, 'join refused');
            }
            break;
          }
          default:
            break;
        }
        // Listeners see every message after the client's own bookkeeping.
        this._emit(msg.type, msg);
      };
      ws.onclose = (ev) => {
        if (this._ws !== ws) return;
        this._ws = null;
        const closeErr = new SwitchboardError(
          'CONNECTION_CLOSED',
          `connection closed (${ev.code}${ev.reason ? `: ${ev.reason}` : ''})`,
          { closeCode: ev.code },
        );
        if (!joined) {
          fail(lastError ?? closeErr);
          return;
        }
        this._dropped(ev.code, ev.reason, lastError ?? closeErr);
      };
    });
  }

  /** The joined connection dropped: reconnect inside the window, or give up. */
  async _dropped(code, reason, error) {
    const rc = this.options.reconnect;
    if (this._closedByUser || rc === false || FINAL_CLOSE_CODES.has(code)) {
      this._finish(code, reason, error);
      return;
    }
    const windowMs = rc?.windowMs ?? 15000;
    const base = rc?.baseDelayMs ?? 250;
    const max = rc?.maxDelayMs ?? 4000;
    const deadline = Date.now() + windowMs;
    this._setState('reconnecting');
    let attempt = 0;
    let lastError = error;
    let delay = this._shutdownDelay ?? base;
    this._shutdownDelay = undefined;
    while (!this._closedByUser && Date.now() < deadline) {
      attempt += 1;
      const wait = Math.min(delay, Math.max(0, deadline - Date.now()));
      this._emit('reconnecting', { attempt, delayMs: wait, error: lastError });
      await sleep(wait);
      if (this._closedByUser) return;
      try {
        await this._attempt();
        return; // joined again; `_attempt` set the state and emitted `joined`
      } catch (err) {
        lastError = err;
        if (err instanceof SwitchboardError && !err.retryable) break;
      }
      delay = Math.min(max, base * 2 ** attempt) * (0.75 + Math.random() * 0.5);
    }
    if (!this._closedByUser) this._finish(code, reason, lastError);
  }

  /** @param {number} code @param {string} reason @param {unknown} error */
  _finish(code, reason, error) {
    if (this.state === 'closed') return;
    this._setState('closed');
    this._emit('closed', { code, reason, error });
  }
}
