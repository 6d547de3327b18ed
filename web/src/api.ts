// The gateway API as the widget uses it (see the web contract). Every call sends cookies
// (`credentials: "include"`) and, on /v1/auth/*, `x-tiergate-session: cookie`, so tokens live
// only in HttpOnly cookies and never in JavaScript.

export interface Source {
  n: number;
  id: string;
  title: string;
  heading_path: string[];
  source: string;
}

/** What the response headers say about one answer. */
export interface AnswerMeta {
  tier?: string;
  model?: string;
  backend?: string;
  upgradeWaking?: boolean;
  grounding?: string;
  sources?: Source[];
  limit?: number;
  remaining?: number;
}

export interface ApiErrorBody {
  message: string;
  type?: string;
  code?: string | null;
  param?: string | null;
}

/** A non-2xx answer, with what the widget needs to show when the visitor can try again. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody,
    readonly retryAfterS: number | undefined,
    readonly meta: AnswerMeta,
  ) {
    super(body.message);
  }
  get code(): string | null | undefined {
    return this.body.code;
  }
}

export interface Me {
  sub: string;
  tier: string;
  store_chats: boolean;
  email?: string;
}

export interface StatusEntry {
  id: string;
  state: "ready" | "waking" | "asleep" | "down";
  eta_s?: number | null;
  answered_by?: string | null;
  /** A routed model: the model it stands for (its state is that model's). */
  routes_to?: string | null;
}

export interface Status {
  data: StatusEntry[];
  contact: string | null;
}

export interface ChatMessage {
  role: "user" | "assistant" | "system";
  content: string;
}

export interface HistoryItem {
  id: string;
  conversation_id: string;
  model: string;
  created_at: number | string;
  expires_at: number | string;
  messages: ChatMessage[];
  answer: ChatMessage;
  finish_reason: string | null;
}

export interface HistoryPage {
  data: HistoryItem[];
  has_more: boolean;
  last_id: string | null;
}

/** "12m30s", "1h2m", "45s", "0.5s" or plain seconds → seconds. */
export function parseDuration(v: string | null | undefined): number | undefined {
  if (!v) return undefined;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let total = 0;
  let seen = false;
  for (const m of s.matchAll(re)) {
    seen = true;
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3600 : m[2] === "m" ? n * 60 : m[2] === "ms" ? n / 1000 : n;
  }
  return seen ? total : undefined;
}

function num(v: string | null): number | undefined {
  if (v === null || v === "") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** The source list is percent-encoded JSON; a malformed one is ignored, not fatal. */
export function parseSources(v: string | null): Source[] | undefined {
  if (!v) return undefined;
  try {
    const list: unknown = JSON.parse(decodeURIComponent(v));
    if (!Array.isArray(list)) return undefined;
    return list
      .filter((s): s is Source => typeof s === "object" && s !== null && typeof (s as Source).n === "number")
      .map((s) => ({
        n: s.n,
        id: String(s.id ?? ""),
        title: String(s.title ?? ""),
        heading_path: Array.isArray(s.heading_path) ? s.heading_path.map(String) : [],
        source: String(s.source ?? ""),
      }));
  } catch {
    return undefined;
  }
}

export function readMeta(h: Headers): AnswerMeta {
  const meta: AnswerMeta = {};
  const set = <K extends keyof AnswerMeta>(k: K, v: AnswerMeta[K] | null | undefined) => {
    if (v !== null && v !== undefined) meta[k] = v;
  };
  set("tier", h.get("x-tiergate-tier"));
  set("model", h.get("x-tiergate-model"));
  set("backend", h.get("x-tiergate-backend"));
  if ((h.get("x-tiergate-upgrade") ?? "").toLowerCase().startsWith("waking")) meta.upgradeWaking = true;
  set("grounding", h.get("x-tiergate-grounding"));
  set("sources", parseSources(h.get("x-tiergate-source-list")));
  set("limit", num(h.get("x-ratelimit-limit-requests")));
  set("remaining", num(h.get("x-ratelimit-remaining-requests")));
  return meta;
}

async function errorFrom(res: Response): Promise<HttpError> {
  let body: ApiErrorBody = { message: res.statusText || `HTTP ${res.status}` };
  try {
    const j = (await res.json()) as { error?: ApiErrorBody };
    if (j && typeof j.error?.message === "string") body = j.error;
  } catch {
    /* not JSON: keep the status text */
  }
  const retry = parseDuration(res.headers.get("retry-after")) ?? parseDuration(res.headers.get("x-ratelimit-reset-requests"));
  return new HttpError(res.status, body, retry, readMeta(res.headers));
}

export class Api {
  constructor(readonly origin: string) {}

  private refreshing: Promise<unknown> | undefined;
  /** A session is believed open (signed in or restored), and when its access cookie ends. */
  private session = false;
  private accessUntil = 0;

  /** Remembers a session's access lifetime from a token answer (`expires_in`, seconds). */
  private noted<T>(body: T): T {
    const expires = (body as { expires_in?: unknown } | undefined)?.expires_in;
    if (typeof expires === "number") {
      this.session = true;
      this.accessUntil = Date.now() + expires * 1000;
    }
    return body;
  }

  /** One refresh at a time, however many calls need it. */
  refresh(): Promise<unknown> {
    this.refreshing ??= this.call("/v1/auth/refresh", { method: "POST", auth: true, body: "{}" })
      .then(
        (body) => this.noted(body),
        (e: unknown) => {
          this.session = false;
          throw e;
        },
      )
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  /**
   * Sends with a live session: the browser drops the access cookie when it expires (15
   * minutes), and a request without it would be answered as anonymous, so an expiring one is
   * refreshed first; a 401 `invalid_token` (a cookie the gateway no longer takes) is refreshed
   * once and sent again. Failing refreshes leave the answer as it is.
   */
  private async fresh(send: () => Promise<Response>): Promise<Response> {
    if (this.session && Date.now() > this.accessUntil - 60_000) await this.refresh().catch(() => undefined);
    const res = await send();
    if (res.status !== 401 || !this.session) return res;
    const first = await errorFrom(res.clone());
    if (first.code !== "invalid_token") return res;
    try {
      await this.refresh();
    } catch {
      return res;
    }
    return send();
  }

  private async call<T>(path: string, init: RequestInit & { auth?: boolean } = {}): Promise<T> {
    const headers = new Headers(init.headers);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    if (init.auth) headers.set("x-tiergate-session", "cookie");
    const send = () => fetch(this.origin + path, { ...init, headers, credentials: "include" });
    // The auth endpoints answer their own 401s (a wrong code, an ended session).
    const res = init.auth ? await send() : await this.fresh(send);
    if (!res.ok) throw await errorFrom(res);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  status(): Promise<Status> {
    return this.call<Status>("/v1/status");
  }
  models(): Promise<{ data: { id: string; capabilities?: { chat?: boolean } }[] }> {
    return this.call("/v1/models");
  }
  feedback(id: string, rating: "up" | "down", flag: string | null): Promise<unknown> {
    return this.call("/v1/feedback", { method: "POST", body: JSON.stringify({ id, rating, flag }) });
  }

  /** Who the cookies say we are; a 401 means there is no session in this browser. */
  async me(): Promise<Me> {
    try {
      const me = await this.call<Me>("/v1/auth/me", { auth: true });
      this.session = true; // its access lifetime unknown (a reload): refreshed before the next call
      return me;
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) this.session = false;
      throw e;
    }
  }
  otpStart(email: string): Promise<unknown> {
    return this.call("/v1/auth/otp/start", { method: "POST", auth: true, body: JSON.stringify({ email }) });
  }
  otpVerify(email: string, code: string): Promise<Me> {
    return this.call<Me>("/v1/auth/otp/verify", { method: "POST", auth: true, body: JSON.stringify({ email, code }) }).then((b) => this.noted(b));
  }
  logout(): Promise<unknown> {
    this.session = false;
    this.accessUntil = 0;
    return this.call("/v1/auth/logout", { method: "POST", auth: true, body: "{}" });
  }
  consent(store_chats: boolean): Promise<Partial<Me>> {
    return this.call<Partial<Me>>("/v1/auth/consent", { method: "PUT", auth: true, body: JSON.stringify({ store_chats }) }).then((b) =>
      this.noted(b),
    );
  }

  history(after?: string | null, limit = 20): Promise<HistoryPage> {
    const q = new URLSearchParams({ limit: String(limit) });
    if (after) q.set("after", after);
    return this.call<HistoryPage>(`/v1/me/chats?${q}`);
  }
  eraseConversation(conversationId: string): Promise<unknown> {
    return this.call(`/v1/me/chats/${encodeURIComponent(conversationId)}`, { method: "DELETE" });
  }
  eraseAll(): Promise<unknown> {
    return this.call("/v1/me/chats", { method: "DELETE" });
  }

  /** Starts a streamed completion; resolves once the headers are in (throws HttpError otherwise). */
  async chat(
    body: { model: string; messages: ChatMessage[] },
    conversationId: string,
    signal: AbortSignal,
  ): Promise<{ meta: AnswerMeta; stream: ReadableStream<Uint8Array> }> {
    const res = await this.fresh(() =>
      fetch(this.origin + "/v1/chat/completions", {
        method: "POST",
        credentials: "include",
        headers: {
          "content-type": "application/json",
          accept: "text/event-stream",
          "x-tiergate-conversation": conversationId,
        },
        body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
        signal,
      }),
    );
    if (!res.ok) throw await errorFrom(res);
    if (!res.body) throw new HttpError(502, { message: "empty response" }, undefined, readMeta(res.headers));
    return { meta: readMeta(res.headers), stream: res.body };
  }
}
