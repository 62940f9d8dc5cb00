// Shared by the call scripts: Chromium with fake camera and microphone, and the check that
// media really flows through TURN relays.
import { chromium } from 'playwright-core';

// Headless Chromium for calls: fake devices, loopback WebRTC allowed, no name resolution but
// loopback, no mDNS hiding of local addresses.
export function launchForCalls() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'],
  });
}

// Waits until every peer connection of `p.page` (there must be `peersWanted`) has decoded >= 30
// video frames over a relay/relay candidate pair and its received bytes keep growing; returns
// the stats. Throws otherwise (after 30 s). Through the media server the remote candidate is
// the server's own (`remoteType` "host"): our relay carries the media to it.
export async function mediaFlows(p, peersWanted, remoteType = 'relay', localType = 'relay') {
  const deadline = Date.now() + 30000;
  let last = null;
  while (Date.now() < deadline) {
    const s = await p.page.evaluate(() => window.chatCalls.stats());
    if (s.length === peersWanted && s.every((x) => x.framesDecoded >= 30 && x.localType === localType && x.remoteType === remoteType)) {
      await p.page.waitForTimeout(1000);
      const again = await p.page.evaluate(() => window.chatCalls.stats());
      for (const x of again) {
        const before = s.find((y) => y.user === x.user);
        if (!before || x.bytesReceived <= before.bytesReceived) throw new Error(`${p.name}: bytes from ${x.user} stopped growing`);
      }
      return again;
    }
    last = s;
    await p.page.waitForTimeout(500);
  }
  const debug = await p.page.evaluate(() => window.chatCalls.debug && window.chatCalls.debug());
  throw new Error(`${p.name}: media did not flow through the relay: ${JSON.stringify(last)} ${debug ? JSON.stringify(debug) : ''}`);
}
