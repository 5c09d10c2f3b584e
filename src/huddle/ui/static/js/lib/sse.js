// Server-Sent Events over fetch. EventSource can only listen to event names known in advance, and huddle's
// event types are open (any agent may invent one), so the stream is parsed here. Reconnects resume with
// Last-Event-ID, which the server answers with every later event exactly once.

import { API, setConn } from "./api.js";

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;

/** Parse SSE text incrementally; calls onFrame({id, event, data}) for each complete frame. */
export class FrameParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.id = null;
    this.event = "";
    this.data = [];
    this.retry = null;
  }

  push(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, newline);
      const width = this.buffer.startsWith("\r\n", newline) ? 2 : 1;
      this.buffer = this.buffer.slice(newline + width);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length || this.event) {
        this.onFrame({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment: heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") this.id = value;
    else if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

/**
 * Follow an SSE stream until stop() or a terminal event. onFrame gets {id, event, data (parsed JSON or text)}.
 * `terminal` names the events that end the stream (e.g. ["completed"]) or is a predicate on a frame;
 * lastEventId resumes after that id. Any other end (network, a slow-reader or shutdown frame) reconnects.
 */
export function follow(path, { onFrame, lastEventId = null, terminal = [], params = {} } = {}) {
  const controller = { stopped: false, abort: null, lastEventId };
  let delay = RETRY_MIN_MS;

  async function once() {
    const abort = new AbortController();
    controller.abort = abort;
    const headers = { accept: "text/event-stream" };
    if (controller.lastEventId !== null) headers["last-event-id"] = String(controller.lastEventId);
    const query = new URLSearchParams(params).toString();
    const response = await fetch(API + path + (query ? `?${query}` : ""), {
      credentials: "same-origin",
      headers,
      signal: abort.signal,
      cache: "no-store",
    });
    if (!response.ok || !response.body) {
      const error = new Error(`stream answered HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    setConn("live");
    delay = RETRY_MIN_MS;
    let ended = false;
    const parser = new FrameParser((frame) => {
      if (frame.id !== null && frame.id !== "") controller.lastEventId = frame.id;
      let data = frame.data;
      try {
        data = JSON.parse(frame.data);
      } catch {
        // not JSON: hand over the text
      }
      onFrame({ id: frame.id, event: frame.event, data });
      if (typeof terminal === "function" ? terminal({ ...frame, data }) : terminal.includes(frame.event)) ended = true;
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    while (!controller.stopped && !ended) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
    }
    if (parser.retry !== null) delay = parser.retry;
    abort.abort();
    return ended;
  }

  (async () => {
    while (!controller.stopped) {
      let ended = false;
      try {
        ended = await once();
      } catch (error) {
        if (controller.stopped) break;
        if (error.status === 401 || error.status === 403 || error.status === 404) {
          setConn("offline");
          onFrame({ id: null, event: "stream-error", data: { status: error.status } });
          return;
        }
      }
      if (ended) {
        setConn("done");
        return;
      }
      if (controller.stopped) break;
      setConn("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(Math.round(delay * 1.5), RETRY_MAX_MS);
    }
  })();

  controller.stop = () => {
    controller.stopped = true;
    controller.abort?.abort();
  };
  return controller;
}
