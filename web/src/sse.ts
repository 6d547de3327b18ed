// Server-sent events over a fetch body. EventSource cannot POST (nor send our headers), so the
// chat reads the stream itself: events are separated by a blank line, their `data:` lines
// joined with "\n"; `[DONE]` ends the stream.

export interface ChunkEvent {
  id?: string;
  delta: string;
  finishReason?: string | null;
  guard?: unknown;
  error?: { message: string; code?: string | null; type?: string };
}

interface RawChunk {
  id?: string;
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null; tiergate_guard?: unknown }[];
  tiergate_guard?: unknown;
  error?: { message: string; code?: string | null; type?: string };
}

/** The body ended without `[DONE]`: the connection dropped (a close-delimited response ends
 * "cleanly" even when the gateway or the network died mid-answer). */
export class StreamCut extends Error {}

/** Yields one parsed chunk per `data:` event until `[DONE]`; throws StreamCut if it never came. */
export async function* sseChunks(stream: ReadableStream<Uint8Array>): AsyncGenerator<ChunkEvent> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new StreamCut("stream ended before [DONE]");
      buf += decoder.decode(value, { stream: true });
      let cut: RegExpExecArray | null;
      while ((cut = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, cut.index);
        buf = buf.slice(cut.index + cut[0].length);
        const data = block
          .split(/\r?\n/)
          .filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue;
        if (data.trim() === "[DONE]") return;
        const ev = parse(data);
        if (ev) yield ev;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parse(data: string): ChunkEvent | undefined {
  let raw: RawChunk;
  try {
    raw = JSON.parse(data) as RawChunk;
  } catch {
    return undefined;
  }
  if (raw.error) return { delta: "", error: raw.error };
  const choice = raw.choices?.[0];
  const ev: ChunkEvent = { delta: choice?.delta?.content ?? "" };
  if (raw.id) ev.id = raw.id;
  if (choice?.finish_reason) ev.finishReason = choice.finish_reason;
  const guard = raw.tiergate_guard ?? choice?.tiergate_guard;
  if (guard) ev.guard = guard;
  return ev;
}
