// Switchboard demo: two or more tabs join a room through Switchboard, connect directly with
// RTCPeerConnection (trickle ICE, the "perfect negotiation" pattern) and share a text area
// over a data channel. Switchboard carries only the signaling.

import { SwitchboardClient, SwitchboardError, createRoom } from '/switchboard.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const form = /** @type {HTMLFormElement} */ ($('join-form'));
const joinButton = /** @type {HTMLButtonElement} */ ($('join'));
const shared = /** @type {HTMLTextAreaElement} */ ($('shared'));

/** Human text for the error codes a person can run into. */
const ERROR_TEXT = {
  ROOM_FULL: 'This room is full.',
  INVALID_PASSWORD: 'Wrong password for this room (or it needs one).',
  TOKEN_EXPIRED: 'The room token has expired: get a new one.',
  INVALID_TOKEN: 'The room token is not valid.',
  AUTH_FAILED: 'The server did not accept the room token.',
  ROOM_CLOSED: 'This room was just closed. Try again in a minute, or pick another room.',
  ROOM_EXISTS: 'A room with this name already exists: join it instead.',
  TOO_MANY_ROOMS: 'The server is not accepting new rooms right now.',
  UNAUTHORIZED: 'This server only issues tokens to its app backend (ISSUER_API_KEY is set).',
  NETWORK_ERROR: 'Cannot reach the Switchboard server.',
  CONNECTION_CLOSED: 'The connection to the signaling server was lost.',
  DRAINING: 'The server is restarting.',
};

/** This tab's identity: kept across reloads of the tab, different in every tab. */
function tabUserId() {
  let id = sessionStorage.getItem('switchboard-demo-user');
  if (!id) {
    id = `u-${crypto.randomUUID().slice(0, 8)}`;
    sessionStorage.setItem('switchboard-demo-user', id);
  }
  return id;
}

/** @param {unknown} err @param {string} [context] */
function showError(err, context) {
  const box = $('error');
  const code = err instanceof SwitchboardError ? err.code : 'ERROR';
  const message = err instanceof Error ? err.message : String(err);
  const text = ERROR_TEXT[code] ?? message;
  box.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = context ? `${context}: ` : '';
  const span = document.createElement('span');
  span.textContent = text;
  const codeEl = document.createElement('code');
  codeEl.textContent = code;
  box.append(strong, span, codeEl);
  if (text !== message && err instanceof SwitchboardError) box.title = message;
  box.dataset.code = code;
  box.hidden = false;
}

function clearError() {
  const box = $('error');
  box.hidden = true;
  delete box.dataset.code;
}

/** @param {string} text */
function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
}

// ---- shared text: last writer wins, ordered by (version, userId) --------------------------

const doc = { text: '', version: 0, by: '' };

/** @param {{text: string, version: number, by: string}} state */
function newer(state) {
  return state.version > doc.version || (state.version === doc.version && state.by > doc.by);
}

/** @param {{text: string, version: number, by: string}} state */
function adopt(state) {
  if (!newer(state)) return;
  Object.assign(doc, { text: state.text, version: state.version, by: state.by });
  if (shared.value !== state.text) {
    const { selectionStart, selectionEnd } = shared;
    shared.value = state.text;
    shared.setSelectionRange(selectionStart, selectionEnd);
  }
}

// ---- one direct connection per remote peer --------------------------------------------

/** @type {SwitchboardClient|null} */
let client = null;
/** @type {Map<string, PeerLink>} */
const links = new Map();

class PeerLink {
  /** @param {SwitchboardClient} sb @param {string} peerId */
  constructor(sb, peerId) {
    this.sb = sb;
    this.peerId = peerId;
    // Perfect negotiation: exactly one side of every pair is polite (yields on glare).
    this.polite = (sb.userId ?? '') < peerId;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingRemoteAnswer = false;
    /** @type {RTCDataChannel|undefined} */
    this.channel = undefined;
    this.pc = new RTCPeerConnection({ iceServers: sb.iceServers });
    this.state = 'connecting';
    // The impolite side opens the channel, so a new pair starts with one offer. (Opening it
    // on both sides makes both offer at once: the pattern resolves that, but Chromium then
    // sometimes never gathers candidates after rolling its own offer back.)
    if (this.polite) {
      this.pc.ondatachannel = ({ channel }) => this.useChannel(channel);
    } else {
      this.useChannel(this.pc.createDataChannel('text'));
    }
    // Should the link stall anyway, an ICE restart renegotiates through the same pattern.
    this.watchdog = setTimeout(() => {
      if (this.state !== 'open' && this.pc.signalingState !== 'closed') {
        log(`link to ${peerId} stalled: restarting ICE`);
        this.pc.restartIce();
      }
    }, 8000);

    this.pc.onnegotiationneeded = async () => {
      try {
        this.makingOffer = true;
        await this.pc.setLocalDescription();
        this.signal(() => sb.sendOffer(peerId, this.pc.localDescription));
      } catch (err) {
        log(`offer to ${peerId} failed: ${err}`);
      } finally {
        this.makingOffer = false;
      }
    };
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate) this.signal(() => sb.sendCandidate(peerId, candidate));
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === 'failed') this.pc.restartIce();
      if (this.channel?.readyState !== 'open') this.setState(this.pc.connectionState);
    };
  }

  /** @param {RTCDataChannel} channel */
  useChannel(channel) {
    this.channel = channel;
    channel.onopen = () => {
      clearTimeout(this.watchdog);
      this.setState('open');
      this.send({ t: 'state', ...doc });
    };
    channel.onclose = () => this.setState('closed');
    channel.onmessage = (ev) => {
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m && m.t === 'state' && typeof m.text === 'string') adopt(m);
    };
  }

  /** Sends signaling unless the signaling connection is down (then ICE restarts later). */
  signal(fn) {
    try {
      fn();
    } catch (err) {
      log(`signaling to ${this.peerId} skipped: ${err.message}`);
    }
  }

  /** @param {string} state */
  setState(state) {
    this.state = state;
    renderPeers();
    renderSync();
  }

  /** @param {RTCSessionDescriptionInit} description */
  async onDescription(description) {
    const readyForOffer =
      !this.makingOffer && (this.pc.signalingState === 'stable' || this.settingRemoteAnswer);
    const collision = description.type === 'offer' && !readyForOffer;
    this.ignoreOffer = !this.polite && collision;
    if (this.ignoreOffer) return;
    this.settingRemoteAnswer = description.type === 'answer';
    await this.pc.setRemoteDescription(description);
    this.settingRemoteAnswer = false;
    if (description.type === 'offer') {
      await this.pc.setLocalDescription();
      this.signal(() => this.sb.sendAnswer(this.peerId, this.pc.localDescription));
    }
  }

  /** @param {RTCIceCandidateInit} candidate */
  async onCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (err) {
      if (!this.ignoreOffer) log(`candidate from ${this.peerId} rejected: ${err}`);
    }
  }

  /** @param {object} message */
  send(message) {
    if (this.channel?.readyState === 'open') this.channel.send(JSON.stringify(message));
  }

  close() {
    clearTimeout(this.watchdog);
    this.channel?.close();
    this.pc.close();
  }
}

/** @param {string} peerId */
function linkFor(peerId) {
  let link = links.get(peerId);
  if (!link && client) {
    link = new PeerLink(client, peerId);
    links.set(peerId, link);
  }
  return link;
}

/** @param {string} peerId */
function dropLink(peerId) {
  links.get(peerId)?.close();
  links.delete(peerId);
}

function dropAllLinks() {
  for (const id of [...links.keys()]) dropLink(id);
}

// ---- rendering -------------------------------------------------------------------------

const LINK_TEXT = {
  new: 'connecting…',
  connecting: 'connecting…',
  connected: 'connected, opening channel…',
  open: 'direct link open',
  disconnected: 'link interrupted',
  failed: 'link failed',
  closed: 'link closed',
};

function renderPeers() {
  const list = $('peers');
  list.replaceChildren();
  if (!client) return;
  const rows = [];
  if (client.state === 'joined' || client.state === 'reconnecting') {
    const me = selfInfo;
    if (me) rows.push({ peer: me, you: true });
  }
  for (const peer of client.peers.values()) rows.push({ peer, you: false });
  for (const { peer, you } of rows) {
    const li = document.createElement('li');
    li.dataset.user = peer.userId;
    li.dataset.status = peer.status;
    const name = document.createElement('span');
    name.className = 'peer-name';
    name.textContent = peer.userName;
    li.append(name);
    if (you) li.append(badge('you', 'you'));
    if (peer.isHost) li.append(badge('host', 'host'));
    const detail = document.createElement('div');
    detail.className = 'peer-detail';
    if (you) {
      detail.textContent = client.state === 'joined' ? 'connected to Switchboard' : 'reconnecting…';
    } else {
      const link = links.get(peer.userId);
      const state = link ? link.state : 'new';
      detail.dataset.link = state;
      detail.textContent = `${peer.status} · ${LINK_TEXT[state] ?? state}`;
    }
    li.append(detail);
    list.append(li);
  }
}

/** @param {string} text @param {string} cls */
function badge(text, cls) {
  const b = document.createElement('span');
  b.className = `badge ${cls}`;
  b.textContent = text;
  return b;
}

function renderSync() {
  const open = [...links.values()].filter((l) => l.state === 'open').length;
  $('sync').textContent = open
    ? `Shared with ${open} peer${open === 1 ? '' : 's'} over a direct data channel.`
    : 'Waiting for another peer…';
  $('sync').dataset.open = String(open);
}

/** @param {string} state */
function renderStatus(state) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = {
    idle: 'Not connected',
    connecting: 'Connecting…',
    joined: 'Connected',
    reconnecting: 'Reconnecting…',
    closed: 'Disconnected',
  }[state] ?? state;
}

// ---- joining and leaving ---------------------------------------------------------------

/** @type {import('/switchboard.js').PeerInfo|undefined} */
let selfInfo;

/** @param {SubmitEvent} ev */
async function join(ev) {
  ev.preventDefault();
  clearError();
  const roomId = /** @type {HTMLInputElement} */ ($('room')).value.trim();
  const userName = /** @type {HTMLInputElement} */ ($('name')).value.trim();
  const password = /** @type {HTMLInputElement} */ ($('password')).value || undefined;
  const create = /** @type {HTMLInputElement} */ ($('create')).checked;
  const maxPeers = Number(/** @type {HTMLInputElement} */ ($('max-peers')).value) || undefined;
  let token = /** @type {HTMLTextAreaElement} */ ($('token')).value.trim() || undefined;
  const userId = tabUserId();
  joinButton.disabled = true;
  try {
    if (create && !token) {
      const room = await createRoom(location.origin, {
        roomId, roomName: roomId, hostId: userId, hostName: userName, password, maxPeers,
      });
      token = room.hostToken;
    }
    const sb = new SwitchboardClient({
      apiUrl: location.origin, roomId, userId, userName, password, token,
    });
    client = sb;
    wire(sb);
    $('room-name').textContent = roomId;
    form.hidden = true;
    $('room-view').hidden = false;
    await sb.connect();
  } catch (err) {
    showError(err, 'Cannot join');
    teardown();
  } finally {
    joinButton.disabled = false;
  }
}

/** @param {SwitchboardClient} sb */
function wire(sb) {
  sb.on('state', ({ state }) => {
    if (client !== sb) return;
    renderStatus(state);
    renderPeers();
  });
  sb.on('joined', (d) => {
    selfInfo = d.self;
    log(`joined ${d.room.roomId} as ${d.self.userName}${d.self.isHost ? ' (host)' : ''}`);
    // A fresh join (or a rejoin after a drop): negotiate anew with everybody.
    dropAllLinks();
    for (const p of d.peers) if (p.status !== 'reconnecting') linkFor(p.userId);
    renderPeers();
    renderSync();
  });
  sb.on('peer-joined', (m) => {
    log(`${m.data.peer.userName} joined`);
    linkFor(m.from);
    renderPeers();
  });
  sb.on('peer-reconnected', (m) => {
    log(`${m.from} reconnected`);
    dropLink(m.from);
    linkFor(m.from);
    renderPeers();
  });
  sb.on('peer-left', (m) => {
    log(`${m.data.peer.userName} left (${m.data.reason})`);
    dropLink(m.from);
    renderPeers();
    renderSync();
  });
  sb.on('host-changed', (m) => {
    if (selfInfo) selfInfo.isHost = m.data.hostId === selfInfo.userId;
    log(`host is now ${m.data.hostId}`);
    renderPeers();
  });
  sb.on('presence', () => renderPeers());
  sb.on('sdp-offer', (m) => linkFor(m.from)?.onDescription(m.data.offer).catch((e) => log(`offer: ${e}`)));
  sb.on('sdp-answer', (m) => linkFor(m.from)?.onDescription(m.data.answer).catch((e) => log(`answer: ${e}`)));
  sb.on('ice-candidate', (m) => linkFor(m.from)?.onCandidate(m.data.candidate));
  sb.on('error', (m) => log(`server error ${m.data.code}: ${m.data.message}`));
  sb.on('room-closed', (m) => log(`room closed (${m.data.reason})`));
  sb.on('reconnecting', ({ attempt }) => log(`reconnecting (attempt ${attempt})…`));
  sb.on('closed', ({ code, error }) => {
    if (client !== sb) return;
    if (code !== 1000) {
      if (code === 4009) showError(new SwitchboardError('REPLACED', 'This room was opened with your identity in another window.'));
      else if (code === 4010) showError(new SwitchboardError('ROOM_CLOSED', 'The room was closed.'));
      else showError(error ?? new SwitchboardError('CONNECTION_CLOSED', `closed (${code})`), 'Disconnected');
    }
    teardown();
  });
}

function teardown() {
  dropAllLinks();
  client = null;
  selfInfo = undefined;
  form.hidden = false;
  $('room-view').hidden = true;
  renderStatus('idle');
  renderPeers();
  renderSync();
}

$('leave').addEventListener('click', () => {
  const sb = client;
  teardown();
  sb?.leave();
});

form.addEventListener('submit', join);

shared.addEventListener('input', () => {
  Object.assign(doc, { text: shared.value, version: doc.version + 1, by: client?.userId ?? '' });
  for (const link of links.values()) link.send({ t: 'state', ...doc });
});

// Closing the tab leaves at once, so the others see it go instead of waiting out the
// reconnect grace.
window.addEventListener('pagehide', (ev) => {
  if (!ev.persisted) client?.leave();
});

document.addEventListener('visibilitychange', () => {
  if (client?.state !== 'joined') return;
  try {
    client.setPresence(document.hidden ? 'idle' : 'active');
  } catch {
    // Not connected right now: nothing to tell.
  }
});

// Prefill: ?room=…&name=… and a remembered name.
const params = new URLSearchParams(location.search);
if (params.get('room')) /** @type {HTMLInputElement} */ ($('room')).value = params.get('room');
/** @type {HTMLInputElement} */ ($('name')).value =
  params.get('name') ?? localStorage.getItem('switchboard-demo-name') ?? '';
$('name').addEventListener('change', (e) =>
  localStorage.setItem('switchboard-demo-name', /** @type {HTMLInputElement} */ (e.target).value));
