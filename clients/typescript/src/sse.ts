/** Incremental Server-Sent Events parser (the WHATWG rules). */
export interface SSEEvent {
  id?: string;
  event: string;
  data: string;
}

export class SSEParser {
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  lastId: string | undefined;

  /** One line (without its end of line); returns an event when one is complete. */
  feed(line: string): SSEEvent | undefined {
    if (line === "") {
      if (!this.data.length && !this.event) return undefined;
      const ev: SSEEvent = { id: this.id, event: this.event || "message", data: this.data.join("\n") };
      if (this.id !== undefined) this.lastId = this.id;
      this.event = "";
      this.data = [];
      this.id = undefined;
      return ev;
    }
    if (line.startsWith(":")) return undefined;
    const i = line.indexOf(":");
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? "" : line.slice(i + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.id = value;
    return undefined;
  }
}
