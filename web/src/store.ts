// The anonymous visitor's conversation, kept in this browser only: messages and what the
// headers said about each answer — never a token (those are HttpOnly cookies) and nothing
// for signed-in users, whose chats are kept (with consent) by the gateway instead.
import type { AnswerMeta } from "./api";

export interface Turn {
  role: "user" | "assistant";
  content: string;
  /** The chat completion id (the stream chunks' `id`), for feedback. */
  id?: string;
  meta?: AnswerMeta;
  /** finish_reason other than "stop", a guard cut, "stopped", or an error message key. */
  note?: string;
  error?: boolean;
}

export interface Saved {
  conversationId: string;
  turns: Turn[];
}

const PREFIX = "tiergate-chat:v1:";

function key(origin: string, what: string): string {
  return `${PREFIX}${what}:${origin}`;
}

function storage(): Storage | undefined {
  try {
    return window.localStorage;
  } catch {
    return undefined; // blocked third-party storage: keep the chat in memory only
  }
}

export function loadConversation(origin: string): Saved | undefined {
  try {
    const raw = storage()?.getItem(key(origin, "conversation"));
    if (!raw) return undefined;
    const s = JSON.parse(raw) as Saved;
    if (typeof s.conversationId !== "string" || !Array.isArray(s.turns)) return undefined;
    return s;
  } catch {
    return undefined;
  }
}

export function saveConversation(origin: string, saved: Saved | undefined): void {
  try {
    const k = key(origin, "conversation");
    if (!saved || saved.turns.length === 0) storage()?.removeItem(k);
    else storage()?.setItem(k, JSON.stringify(saved));
  } catch {
    /* quota or blocked storage: the chat still works, it is just not kept */
  }
}

/** A hint (not a credential) that this browser signed in, so anonymous visitors never call
 * /v1/auth/me and see a 401 in their console. */
export function signedInHint(origin: string): boolean {
  try {
    return storage()?.getItem(key(origin, "signed-in")) === "1";
  } catch {
    return false;
  }
}

export function setSignedInHint(origin: string, on: boolean): void {
  try {
    if (on) storage()?.setItem(key(origin, "signed-in"), "1");
    else storage()?.removeItem(key(origin, "signed-in"));
  } catch {
    /* ignore */
  }
}

/** A v4 UUID; crypto.randomUUID exists only in secure contexts, getRandomValues everywhere. */
export function uuid(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
