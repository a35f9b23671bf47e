// Bundled by the test setup (esbuild): an unmodified y-webrtc provider syncing a Y.Text,
// exposed to the test through `window`.

import * as Y from 'yjs';
import { WebrtcProvider } from 'y-webrtc';

/**
 * Starts a provider for `room` whose only signaling server is `url`.
 * @param {{url: string, room: string, iceServers?: RTCIceServer[]}} opts
 */
window.startYjs = ({ url, room, iceServers }) => {
  const doc = new Y.Doc();
  const provider = new WebrtcProvider(room, doc, {
    signaling: [url],
    peerOpts: { config: { iceServers: iceServers ?? [] } },
  });
  const text = doc.getText('shared');
  window.yjs = { doc, provider, text };
};

window.yText = () => window.yjs.text.toString();
window.yAppend = (s) => window.yjs.text.insert(window.yjs.text.length, s);
window.yPeers = () => window.yjs.provider.room?.webrtcConns.size ?? 0;
window.ySignalingConnected = () => window.yjs.provider.signalingConns.some((c) => c.connected);
