// A scripted WebSocket server speaking just enough RFC 6455 and wire framing to drive the
// client through refusals, lost answers, split answers, pings and timeouts deterministically.
import http from "node:http";
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** The wire request frames of a message: [{ op, flags, payload }]. */
export function splitFrames(buf) {
  const out = [];
  let at = 0;
  while (at + 6 <= buf.length) {
    const n = buf.readUInt32LE(at + 2);
    out.push({ op: buf[at], flags: buf[at + 1], payload: buf.subarray(at + 6, at + 6 + n) });
    at += 6 + n;
  }
  return out;
}

/** A response frame. */
export function answer(status, payload = Buffer.alloc(0)) {
  const p = typeof payload === "string" ? Buffer.from(payload) : Buffer.from(payload);
  const h = Buffer.alloc(6);
  h[0] = status;
  h.writeUInt32LE(p.length, 2);
  return Buffer.concat([h, p]);
}

export const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

export const overflow = (retryAfter = 0) =>
  answer(0x04, JSON.stringify({ error: "buffer full", code: "buffer_overflow", error_id: "e1", retry_after_sec: retryAfter, buffer_size: 9 }));

/** A server WebSocket frame (unmasked). */
export function wsFrame(opcode, payload, fin = true) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0, n]) : n < 65536 ? Buffer.from([0, 126, n >> 8, n & 255]) : Buffer.alloc(10);
  if (n >= 65536) {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([head, payload]);
}

/**
 * Starts the server. `onMessage(conn, frames, raw)` is called with each binary message's wire
 * frames; `conn.send(buf)` answers in one binary message, `conn.raw(buf)` writes bytes as they
 * are, `conn.socket.destroy()` drops it. `onUpgrade(req, socket)` may answer the upgrade itself
 * (return true). Returns { url, conns, pongs, close() }.
 */
export async function scriptedServer({ onMessage, onUpgrade } = {}) {
  const server = http.createServer((_, res) => res.writeHead(426).end());
  const state = { conns: [], pongs: [], upgrades: [] };
  server.on("upgrade", (req, socket) => {
    state.upgrades.push(req.headers);
    if (onUpgrade?.(req, socket)) return;
    const accept = createHash("sha1").update(req.headers["sec-websocket-key"] + GUID).digest("base64");
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    const conn = {
      socket,
      messages: 0,
      send: (buf) => socket.write(wsFrame(0x2, buf)),
      raw: (buf) => socket.write(buf),
    };
    state.conns.push(conn);
    let pending = Buffer.alloc(0);
    let fragments = [];
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (pending.length < 2) return;
        const b0 = pending[0];
        const b1 = pending[1];
        let len = b1 & 0x7f;
        let at = 2;
        if (len === 126) {
          if (pending.length < 4) return;
          len = pending.readUInt16BE(2);
          at = 4;
        } else if (len === 127) {
          if (pending.length < 10) return;
          len = Number(pending.readBigUInt64BE(2));
          at = 10;
        }
        if (!(b1 & 0x80)) throw new Error("client frame not masked");
        if (pending.length < at + 4 + len) return;
        const mask = pending.subarray(at, at + 4);
        const payload = Buffer.from(pending.subarray(at + 4, at + 4 + len));
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
        pending = pending.subarray(at + 4 + len);
        const op = b0 & 0x0f;
        if (op === 0x8) {
          socket.end();
          return;
        }
        if (op === 0xa) {
          state.pongs.push(payload);
          continue;
        }
        fragments.push(payload);
        if (!(b0 & 0x80)) continue;
        const msg = Buffer.concat(fragments);
        fragments = [];
        conn.messages++;
        onMessage?.(conn, splitFrames(msg), msg);
      }
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    ...state,
    close: () => {
      for (const c of state.conns) c.socket.destroy();
      server.closeAllConnections?.();
      server.close();
    },
  };
}
