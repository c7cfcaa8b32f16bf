/**
 * Binary WebSocket sessions for the wire protocol, two ways:
 *
 * - {@link openGlobalWebSocket}: the platform's `WebSocket` (browsers, Node >= 22), which cannot
 *   send headers: the token then goes in an `AUTH` frame;
 * - {@link openNodeWebSocket}: a minimal RFC 6455 client over `node:net` / `node:tls` (loaded
 *   with a dynamic `import()`, so browser bundles never pull them in) that sends
 *   `Authorization: Bearer …` with the upgrade.
 *
 * Both report whole binary messages and the end of the session to {@link SocketEvents}.
 */
import { TimeoutError, TransportError, errorFromResponse } from "./errors.js";
import { parseRetryAfter } from "./retry.js";
import { concat } from "./wire.js";

/** What a socket tells its owner. `close` is called once, when the session ends for any reason. */
export interface SocketEvents {
  message(data: Uint8Array): void;
  close(reason: TransportError): void;
}

/** An open session. */
export interface WireSocket {
  /** Sends `parts` (`total` bytes) as one binary message. */
  send(parts: readonly Uint8Array[], total: number): void;
  /** Closes the session (`events.close` is not called for it). */
  close(): void;
  /** Whether an idle session keeps a Node process alive (no-op elsewhere). */
  ref(on: boolean): void;
}

/** A WHATWG WebSocket class (`globalThis.WebSocket` or a compatible one). */
export type WebSocketClass = new (url: string) => WebSocket;

/** A session over the platform's WebSocket class (binary messages as ArrayBuffers). */
export function openGlobalWebSocket(Ctor: WebSocketClass, url: string, events: SocketEvents, timeoutMs: number): Promise<WireSocket> {
  return new Promise((resolve, reject) => {
    let ws: WebSocket;
    try {
      ws = new Ctor(url);
    } catch (e) {
      return reject(new TransportError(`cannot open a WebSocket to ${url}: ${String(e)}`, false, e));
    }
    ws.binaryType = "arraybuffer";
    let open = false;
    let ended = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            ended = true;
            ws.close();
            reject(new TimeoutError(`WebSocket ${url}: not open after ${timeoutMs} ms`, false));
          }, timeoutMs)
        : undefined;
    const end = (reason: TransportError) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      if (open) events.close(reason);
      else reject(reason);
    };
    ws.onopen = () => {
      if (ended) return;
      open = true;
      clearTimeout(timer);
      resolve({
        send: (parts, total) => ws.send(concat(parts, total)),
        close: () => {
          ended = true;
          ws.close(1000);
        },
        ref: () => {},
      });
    };
    ws.onerror = () => {
      // The event says nothing more; a refused upgrade (401 wrong token, 403 other origin,
      // 503 too many sessions) looks the same as an unreachable server.
      if (!open) end(new TransportError(`cannot open a WebSocket to ${url} (unreachable, or the upgrade was refused)`, false));
    };
    ws.onclose = (e) => {
      const why = `code ${e.code}${e.reason ? `: ${e.reason}` : ""}`;
      end(new TransportError(open ? `the WebSocket ${url} closed (${why})` : `cannot open a WebSocket to ${url} (${why})`, open));
    };
    ws.onmessage = (e) => {
      if (ended) return;
      if (e.data instanceof ArrayBuffer) events.message(new Uint8Array(e.data));
      else {
        ws.close(1003);
        end(new TransportError(`the WebSocket ${url} sent a non-binary message`, true));
      }
    };
  });
}

// -- RFC 6455 over node:net / node:tls

/* eslint-disable @typescript-eslint/no-explicit-any */
interface NodeModules {
  net: any;
  tls: any;
  crypto: any;
}
let nodeModules: Promise<NodeModules> | undefined;

/** `node:net`, `node:tls`, `node:crypto`, loaded on first use (never by browser bundles). */
function loadNode(): Promise<NodeModules> {
  const load = (name: string): Promise<any> => import(/* webpackIgnore: true */ /* @vite-ignore */ name);
  return (nodeModules ??= Promise.all([load("node:net"), load("node:tls"), load("node:crypto")]).then(([net, tls, crypto]) => ({
    net,
    tls,
    crypto,
  })));
}

/** True when `node:net` can be used (Node, Deno, Bun). */
export function hasNodeSockets(): boolean {
  const p = (globalThis as any).process;
  return typeof p?.versions?.node === "string";
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEAD = 16 * 1024;
/** Largest message accepted from the server (its answers come in messages of ~1 MiB). */
const MAX_INBOUND = 64 * 1024 * 1024;

/**
 * A session over `node:net` (`ws://`) or `node:tls` (`wss://`): the upgrade request with
 * `headers` (e.g. `Authorization`), the `Sec-WebSocket-Accept` check, then masked binary
 * frames out; binary messages (whole or fragmented), ping (answered with pong) and close in.
 * A refused upgrade throws the server's error (`Unauthorized` for 401, …).
 */
export async function openNodeWebSocket(
  url: string,
  headers: Record<string, string>,
  events: SocketEvents,
  timeoutMs: number,
): Promise<WireSocket> {
  const { net, tls, crypto } = await loadNode();
  const u = new URL(url);
  const secure = u.protocol === "wss:";
  if (!secure && u.protocol !== "ws:") throw new TypeError(`not a WebSocket URL: ${url}`);
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const port = Number(u.port) || (secure ? 443 : 80);
  const key: string = crypto.randomBytes(16).toString("base64");
  const accept: string = crypto.createHash("sha1").update(key + GUID).digest("base64");
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const request = lines.join("\r\n") + "\r\n\r\n";

  return new Promise((resolve, reject) => {
    const sock = secure
      ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ALPNProtocols: ["http/1.1"] })
      : net.connect({ host, port });
    sock.setNoDelay(true);
    let settled = false;
    let connected = false;
    let head: Uint8Array[] = [];
    let headBytes = 0;
    const fail = (e: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    const timer =
      timeoutMs > 0 ? setTimeout(() => fail(new TimeoutError(`WebSocket ${url}: no upgrade in ${timeoutMs} ms`, false)), timeoutMs) : undefined;
    sock.once(secure ? "secureConnect" : "connect", () => {
      connected = true;
      sock.write(request);
    });
    sock.on("error", (e: any) =>
      fail(new TransportError(connected ? `WebSocket ${url}: ${e?.code ?? e}` : `cannot connect to ${url}: ${e?.code ?? e}`, false, e)),
    );
    sock.on("close", () => fail(new TransportError(`WebSocket ${url}: the connection closed during the upgrade`, false)));
    const onHead = (chunk: Uint8Array) => {
      head.push(chunk);
      headBytes += chunk.length;
      const all = concat(head, headBytes);
      const end = indexOfHeadEnd(all);
      if (end < 0) {
        if (headBytes > MAX_HEAD) fail(new TransportError(`WebSocket ${url}: the upgrade answer's head is too long`, false));
        head = [all];
        return;
      }
      const text = new TextDecoder().decode(all.subarray(0, end));
      const rest = all.subarray(end + 4);
      const [statusLine = "", ...headerLines] = text.split("\r\n");
      const status = Number(statusLine.split(" ")[1]);
      const h: Record<string, string> = {};
      for (const l of headerLines) {
        const i = l.indexOf(":");
        if (i > 0) h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      sock.off("data", onHead);
      if (status !== 101) return readRefusal(status, h, rest);
      if ((h["upgrade"] ?? "").toLowerCase() !== "websocket" || h["sec-websocket-accept"] !== accept) {
        return fail(new TransportError(`WebSocket ${url}: the server's upgrade answer is not a valid WebSocket handshake`, false));
      }
      if (h["sec-websocket-extensions"]) {
        return fail(new TransportError(`WebSocket ${url}: the server chose extensions that were not offered`, false));
      }
      settled = true;
      clearTimeout(timer);
      sock.removeAllListeners("close");
      sock.removeAllListeners("error");
      resolve(new NodeWebSocket(sock, crypto, url, events, rest));
    };
    // A refused upgrade: its body (the error JSON) up to Content-Length or the end.
    const readRefusal = (status: number, h: Record<string, string>, first: Uint8Array) => {
      const want = Number(h["content-length"] ?? NaN);
      const body: Uint8Array[] = [first];
      let have = first.length;
      const done = () => {
        const text = new TextDecoder().decode(concat(body, have));
        fail(errorFromResponse(status, text, parseRetryAfter(h["retry-after"])));
      };
      if (have >= want) return done();
      sock.on("data", (c: Uint8Array) => {
        body.push(c);
        have += c.length;
        if (have >= want || have > MAX_HEAD) done();
      });
      sock.removeAllListeners("close");
      sock.on("close", done);
    };
    sock.on("data", onHead);
  });
}

function indexOfHeadEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

/** An upgraded RFC 6455 session (client side: every frame sent is masked). */
class NodeWebSocket implements WireSocket {
  private pending: Uint8Array[] = [];
  private have = 0;
  private need = 0;
  private fragments: Uint8Array[] = [];
  private fragmentBytes = 0;
  private ended = false;
  private masks: Uint8Array;
  private maskAt: number;
  private readonly alloc: (n: number) => Uint8Array;

  constructor(
    private readonly sock: any,
    private readonly crypto: any,
    private readonly url: string,
    private readonly events: SocketEvents,
    rest: Uint8Array,
  ) {
    const B = (globalThis as any).Buffer;
    this.alloc = B ? (n) => B.allocUnsafe(n) : (n) => new Uint8Array(n);
    this.masks = new Uint8Array(4096);
    this.maskAt = this.masks.length;
    sock.on("data", (c: Uint8Array) => this.onData(c));
    sock.on("error", (e: any) => this.end(new TransportError(`wire connection ${url} lost: ${e?.code ?? e}`, true, e)));
    sock.on("close", () => this.end(new TransportError(`wire connection ${url} closed by the server`, true)));
    if (rest.length) this.onData(rest);
  }

  send(parts: readonly Uint8Array[], total: number): void {
    if (!this.ended) this.sock.write(this.frame(0x2, parts, total));
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    const code = new Uint8Array([0x03, 0xe8]); // 1000: normal closure
    this.sock.end(this.frame(0x8, [code], 2));
    (setTimeout(() => this.sock.destroy(), 1000) as { unref?(): void }).unref?.();
  }

  ref(on: boolean): void {
    if (on) this.sock.ref();
    else this.sock.unref();
  }

  /** One final frame of `opcode` carrying `parts`, masked with a fresh key. */
  private frame(opcode: number, parts: readonly Uint8Array[], total: number): Uint8Array {
    const hl = total < 126 ? 2 : total < 65536 ? 4 : 10;
    const out = this.alloc(hl + 4 + total);
    out[0] = 0x80 | opcode;
    if (hl === 2) out[1] = 0x80 | total;
    else if (hl === 4) {
      out[1] = 0x80 | 126;
      out[2] = total >>> 8;
      out[3] = total & 0xff;
    } else {
      out[1] = 0x80 | 127;
      const v = new DataView(out.buffer, out.byteOffset, hl);
      v.setUint32(2, Math.floor(total / 4294967296));
      v.setUint32(6, total >>> 0);
    }
    if (this.maskAt + 4 > this.masks.length) {
      this.crypto.randomFillSync(this.masks);
      this.maskAt = 0;
    }
    const mask = this.masks.subarray(this.maskAt, this.maskAt + 4);
    this.maskAt += 4;
    out.set(mask, hl);
    const m0 = mask[0]!, m1 = mask[1]!, m2 = mask[2]!, m3 = mask[3]!;
    let at = hl + 4;
    let k = 0; // the payload position, mod 4: which mask byte applies
    for (const p of parts) {
      const n = p.length;
      let i = 0;
      for (; i < n && (k & 3) !== 0; i++, k++) out[at++] = p[i]! ^ mask[k & 3]!;
      for (; i + 3 < n; i += 4, at += 4) {
        out[at] = p[i]! ^ m0;
        out[at + 1] = p[i + 1]! ^ m1;
        out[at + 2] = p[i + 2]! ^ m2;
        out[at + 3] = p[i + 3]! ^ m3;
      }
      for (; i < n; i++, k++) out[at++] = p[i]! ^ mask[k & 3]!;
    }
    return out;
  }

  private onData(chunk: Uint8Array): void {
    if (this.ended) return;
    let data = chunk;
    if (this.have) {
      this.pending.push(chunk);
      this.have += chunk.length;
      if (this.have < this.need) return;
      data = concat(this.pending, this.have);
      this.pending = [];
      this.have = 0;
    }
    let at = 0;
    let need = 0; // bytes of the incomplete frame at `at`, once its header is known
    while (!this.ended) {
      const left = data.length - at;
      if (left < 2) break;
      const b0 = data[at]!;
      const b1 = data[at + 1]!;
      let len = b1 & 0x7f;
      let hl = 2;
      if (len === 126) {
        hl = 4;
        if (left < hl) break;
        len = (data[at + 2]! << 8) | data[at + 3]!;
      } else if (len === 127) {
        hl = 10;
        if (left < hl) break;
        const v = new DataView(data.buffer, data.byteOffset + at, 10);
        len = v.getUint32(2) * 4294967296 + v.getUint32(6);
      }
      if (b1 & 0x80) return this.protocolError("the server masked a frame");
      if (b0 & 0x70) return this.protocolError("a frame with reserved bits set");
      if (len > MAX_INBOUND) return this.protocolError(`a frame of ${len} bytes`);
      if (left < hl + len) {
        need = hl + len;
        break;
      }
      this.onFrame(b0 & 0x80, b0 & 0x0f, data.subarray(at + hl, at + hl + len));
      at += hl + len;
    }
    if (at < data.length && !this.ended) {
      const rest = data.subarray(at);
      this.pending = [rest];
      this.have = rest.length;
      this.need = need || rest.length + 1;
    }
  }

  private onFrame(fin: number, opcode: number, payload: Uint8Array): void {
    switch (opcode) {
      case 0x2: // binary
      case 0x0: // continuation
        if ((opcode === 0x2) === this.fragments.length > 0) return this.protocolError("an unexpected continuation frame");
        if (fin && !this.fragments.length) return this.events.message(payload);
        this.fragments.push(payload);
        this.fragmentBytes += payload.length;
        if (this.fragmentBytes > MAX_INBOUND) return this.protocolError(`a message over ${MAX_INBOUND} bytes`);
        if (fin) {
          const whole = concat(this.fragments, this.fragmentBytes);
          this.fragments = [];
          this.fragmentBytes = 0;
          this.events.message(whole);
        }
        return;
      case 0x8: {
        // close: answer it, then end
        const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
        const reason = new TextDecoder().decode(payload.subarray(2));
        if (!this.ended) this.sock.end(this.frame(0x8, [payload.subarray(0, 2)], Math.min(2, payload.length)));
        return this.end(new TransportError(`wire connection ${this.url} closed by the server (code ${code}${reason ? `: ${reason}` : ""})`, true));
      }
      case 0x9: // ping
        if (!fin || payload.length > 125) return this.protocolError("a fragmented or long ping");
        this.sock.write(this.frame(0xa, [payload], payload.length));
        return;
      case 0xa: // pong
        return;
      default:
        return this.protocolError(opcode === 0x1 ? "a text message" : `a frame of opcode ${opcode}`);
    }
  }

  private protocolError(what: string): void {
    this.end(new TransportError(`wire connection ${this.url}: the server sent ${what}; closing`, true));
  }

  private end(reason: TransportError): void {
    if (this.ended) return;
    this.ended = true;
    this.sock.destroy();
    this.events.close(reason);
  }
}
