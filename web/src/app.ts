// The chat itself (the lazily loaded chunk): streaming answers, stop/retry/new conversation,
// the tier and model labels read from the gateway's response headers, the small-model-while-
// the-large-wakes upgrade, limits and waking states, sources, feedback and the account panel.
import { LitElement, html, nothing, svg, type PropertyValues, type TemplateResult } from "lit";
import { repeat } from "lit/directives/repeat.js";
import "./account";
import type { TiergateAccount } from "./account";
import { Api, HttpError, type AnswerMeta, type ChatMessage, type Me, type Source } from "./api";
import { duration, translator, type Key } from "./i18n";
import { plainText, renderMarkdown } from "./markdown";
import { sseChunks } from "./sse";
import { loadConversation, saveConversation, setSignedInHint, signedInHint, uuid, type Turn } from "./store";
import { styles } from "./styles";

type Banner = { kind: "limit" | "waking" | "error"; until?: number; key: Key; message?: string };
type Feedback = { rating?: "up" | "down"; flag?: string; state: "sent" | "failed" | "sending" };

const FLAGS = [
  ["inappropriate", "flagInappropriate"],
  ["wrong", "flagWrong"],
  ["unsafe", "flagUnsafe"],
  ["other", "flagOther"],
] as const;

const ANON_MODEL = "tiergate-small";

// Icons are inline SVG: emoji glyphs depend on fonts the visitor may not have.
const THUMB = svg`<path d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6c-.4.4-.6.9-.6 1.4v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1.2-.7v-2z"/>`;
const icon = (flip: boolean) =>
  html`<svg class="icon ${flip ? "flip" : ""}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">${THUMB}</svg>`;

/** "small model on CPU" / "large model on GPU" from what answered; anything else verbatim. */
export function modelKind(meta: AnswerMeta | undefined): "small" | "large" | "other" | "none" {
  if (!meta?.model && !meta?.backend) return "none";
  const b = (meta.backend ?? "").toLowerCase();
  const m = (meta.model ?? "").toLowerCase();
  if (b.startsWith("gpu") || (!b && m.includes("large"))) return "large";
  if (b.startsWith("cpu") || (!b && m.includes("small"))) return "small";
  return "other";
}

/** The heading path without its first entry when that just repeats the title. */
const path = (s: Source): string[] => (s.heading_path[0] === s.title ? s.heading_path.slice(1) : s.heading_path);

export class TiergateChatApp extends LitElement {
  static override styles = styles;
  static properties = {
    api: {},
    model: {},
    lang: { reflect: true },
    mode: { reflect: true },
    open: { type: Boolean, reflect: true },
    turns: { state: true },
    streaming: { state: true },
    me: { state: true },
    tier: { state: true },
    lastMeta: { state: true },
    banner: { state: true },
    largeWaking: { state: true },
    largeReady: { state: true },
    contact: { state: true },
    showAccount: { state: true },
    announce: { state: true },
    now: { state: true },
  };
  declare api: string;
  declare model: string;
  declare lang: string;
  declare mode: "page" | "bubble";
  declare open: boolean;
  declare turns: Turn[];
  declare streaming: boolean;
  declare me: Me | null;
  declare tier: string;
  declare lastMeta: AnswerMeta | undefined;
  declare banner: Banner | null;
  declare largeWaking: boolean;
  declare largeReady: boolean;
  declare contact: string | null;
  declare showAccount: boolean;
  declare announce: string;
  declare now: number;

  private client!: Api;
  private conversationId = uuid();
  private controller: AbortController | undefined;
  private signedModel: string | undefined;
  private feedback = new Map<string, Feedback>();
  private rendered = new WeakMap<Turn, { content: string; frag: DocumentFragment; text: string }>();
  private pollTimer: number | undefined;
  private tickTimer: number | undefined;
  private frame = 0;
  private t = translator("en");

  constructor() {
    super();
    this.api = "";
    this.model = "";
    this.lang = "en";
    this.mode = "page";
    this.open = true;
    this.turns = [];
    this.streaming = false;
    this.me = null;
    this.tier = "anonymous";
    this.banner = null;
    this.largeWaking = false;
    this.largeReady = false;
    this.contact = null;
    this.showAccount = false;
    this.announce = "";
    this.now = Date.now();
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.client = new Api(this.api || location.origin);
    const saved = loadConversation(this.client.origin);
    if (saved) {
      this.conversationId = saved.conversationId;
      this.turns = saved.turns.filter((t) => t.role === "user" || t.role === "assistant");
      this.lastMeta = [...this.turns].reverse().find((t) => t.meta?.model)?.meta;
    }
    void this.client.status().then(
      (s) => (this.contact = s.contact ?? null),
      () => undefined,
    );
    if (signedInHint(this.client.origin)) void this.restoreSession();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.controller?.abort();
    window.clearTimeout(this.pollTimer);
    window.clearInterval(this.tickTimer);
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("lang")) this.t = translator(this.lang);
    if (changed.has("api") && this.client && this.api && this.client.origin !== this.api) this.client = new Api(this.api);
  }

  protected override updated(changed: PropertyValues<this>): void {
    if (changed.has("open") && this.open && this.mode === "bubble") this.input()?.focus();
    if (changed.has("turns") || this.streaming) {
      const log = this.renderRoot.querySelector(".log");
      if (log) log.scrollTop = log.scrollHeight;
    }
  }

  private input(): HTMLTextAreaElement | null {
    return this.renderRoot.querySelector("textarea");
  }

  // ---- session -------------------------------------------------------------------------

  private async restoreSession(): Promise<void> {
    try {
      this.setMe(await this.client.me());
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        try {
          await this.client.refresh();
          this.setMe(await this.client.me());
          return;
        } catch {
          /* fall through: signed out */
        }
      }
      this.setMe(null);
    }
  }

  private setMe(me: Me | null): void {
    this.me = me;
    this.tier = me ? me.tier || "user" : "anonymous";
    setSignedInHint(this.client.origin, !!me);
    if (me) {
      saveConversation(this.client.origin, undefined); // only anonymous chats live in the browser
      void this.client.models().then(
        (r) => {
          const chat = r.data.filter((m) => m.capabilities?.chat !== false && !/embed/i.test(m.id)).map((m) => m.id);
          this.signedModel = chat.includes("tiergate") ? "tiergate" : chat[0];
        },
        () => undefined,
      );
    } else {
      this.signedModel = undefined;
    }
  }

  private onSignedIn(e: CustomEvent<Me>): void {
    this.setMe(e.detail);
    this.banner = null;
  }

  private onSignedOut(): void {
    this.setMe(null);
    this.newConversation();
  }

  private onConsent(e: CustomEvent<Me>): void {
    this.me = e.detail;
  }

  private onOpenConversation(e: CustomEvent<{ conversationId: string; turns: Turn[] }>): void {
    this.stop();
    this.conversationId = e.detail.conversationId;
    this.turns = e.detail.turns;
    this.banner = null;
    this.input()?.focus();
  }

  // ---- chat ----------------------------------------------------------------------------

  private askModel(): string {
    if (this.model) return this.model;
    return this.me ? (this.signedModel ?? "tiergate") : ANON_MODEL;
  }

  private persist(): void {
    if (!this.me) saveConversation(this.client.origin, { conversationId: this.conversationId, turns: this.turns });
  }

  private send(): void {
    const box = this.input();
    const text = box?.value.trim() ?? "";
    if (!text || this.streaming) return;
    box!.value = "";
    this.turns = [...this.turns, { role: "user", content: text }];
    this.persist();
    void this.ask();
  }

  /** Resends the last user turn: whatever answered it (or failed to) is dropped first. */
  private retry(): void {
    if (this.streaming) return;
    const last = this.turns.map((t) => t.role).lastIndexOf("user");
    if (last < 0) return;
    this.turns = this.turns.slice(0, last + 1);
    void this.ask();
  }

  stop(): void {
    this.controller?.abort();
  }

  private newConversation(): void {
    this.stop();
    this.turns = [];
    this.conversationId = uuid();
    this.banner = null;
    this.announce = "";
    saveConversation(this.client.origin, undefined);
    this.input()?.focus();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.requestUpdate();
    });
  }

  private async ask(refreshed = false): Promise<void> {
    const messages: ChatMessage[] = this.turns
      .filter((t) => !t.error && t.content)
      .map((t) => ({ role: t.role, content: t.content }));
    const answer: Turn = { role: "assistant", content: "" };
    this.turns = [...this.turns, answer];
    this.streaming = true;
    this.banner = null;
    this.announce = "";
    const ctl = new AbortController();
    this.controller = ctl;
    let again = false;
    try {
      const { meta, stream } = await this.client.chat({ model: this.askModel(), messages }, this.conversationId, ctl.signal);
      answer.meta = meta;
      this.applyMeta(meta);
      for await (const ev of sseChunks(stream)) {
        if (ev.id && !answer.id) answer.id = ev.id;
        if (ev.error) {
          answer.error = true;
          answer.note = ev.error.message;
          this.banner = { kind: "error", key: "errorGeneric", message: ev.error.message };
          break;
        }
        if (ev.delta) answer.content += ev.delta;
        if (ev.guard) answer.note = "guardCut";
        else if (ev.finishReason === "content_filter") answer.note = "contentFilter";
        else if (ev.finishReason === "length") answer.note = "lengthCut";
        this.schedule();
      }
      if (!answer.error && answer.content) this.announce = this.t("announceAnswer", { text: this.answerText(answer) });
    } catch (e) {
      if (ctl.signal.aborted) {
        answer.note = "stopped";
      } else if (e instanceof HttpError) {
        this.turns = this.turns.filter((t) => t !== answer);
        if (e.status === 401 && this.me && !refreshed) again = true;
        else this.showHttpError(e);
      } else {
        answer.error = true;
        answer.note = "errorNetwork";
        this.banner = { kind: "error", key: "errorNetwork" };
      }
    } finally {
      if (this.controller === ctl) this.controller = undefined;
      this.streaming = false;
      this.turns = [...this.turns];
      this.persist();
    }
    if (again) {
      try {
        await this.client.refresh();
      } catch {
        this.setMe(null);
      }
      return this.ask(true);
    }
    if (this.me?.store_chats && this.showAccount)
      void this.renderRoot.querySelector<TiergateAccount>("tiergate-account")?.reloadHistory(this.me, this.conversationId);
  }

  private answerText(turn: Turn): string {
    this.markdown(turn);
    return this.rendered.get(turn)?.text ?? turn.content;
  }

  private applyMeta(meta: AnswerMeta): void {
    if (meta.tier) this.tier = meta.tier;
    this.lastMeta = meta;
    if (meta.upgradeWaking) {
      this.largeReady = false;
      if (!this.largeWaking) {
        this.largeWaking = true;
        this.poll(this.askModel(), meta.model);
      }
    } else if (modelKind(meta) === "large") {
      this.largeWaking = false;
      this.largeReady = false;
    }
  }

  private showHttpError(e: HttpError): void {
    const until = e.retryAfterS !== undefined ? Date.now() + e.retryAfterS * 1000 : undefined;
    if (e.status === 429) {
      if (e.meta.remaining !== undefined) this.lastMeta = { ...this.lastMeta, ...e.meta };
      this.banner = { kind: "limit", key: until ? "limitReached" : "limitReachedSoon", ...(until ? { until } : {}) };
    } else if (e.status === 503 && e.code === "model_waking") {
      this.banner = { kind: "waking", key: until ? "waking" : "wakingNoEta", ...(until ? { until } : {}) };
      this.poll(this.askModel(), undefined);
    } else {
      this.banner = { kind: "error", key: "errorGeneric", message: e.message };
    }
    if (until) this.tick();
  }

  /** Keeps "ask again in N" current while a banner with a time is up. */
  private tick(): void {
    window.clearInterval(this.tickTimer);
    this.tickTimer = window.setInterval(() => {
      this.now = Date.now();
      if (!this.banner?.until || this.banner.until < this.now) window.clearInterval(this.tickTimer);
    }, 1000);
  }

  /** Polls /v1/status until the model that was waking is ready (then says so). */
  private poll(wanted: string, answeredBy: string | undefined): void {
    window.clearTimeout(this.pollTimer);
    const once = async () => {
      let delay = 5;
      try {
        const s = await this.client.status();
        this.contact = s.contact ?? null;
        const target =
          s.data.find((d) => d.id === wanted && d.id !== answeredBy) ??
          s.data.find((d) => d.state !== "ready" && d.id !== answeredBy);
        if (!target || target.state === "ready") {
          if (this.largeWaking) this.largeReady = true;
          this.largeWaking = false;
          if (this.banner?.kind === "waking") this.banner = { ...this.banner, until: Date.now() };
          return;
        }
        if (target.eta_s) delay = Math.min(15, Math.max(2, target.eta_s / 2));
      } catch {
        delay = 10;
      }
      this.pollTimer = window.setTimeout(once, delay * 1000);
    };
    this.pollTimer = window.setTimeout(once, 2000);
  }

  private async sendFeedback(turn: Turn, rating: "up" | "down", flag: string | null, ev?: Event): Promise<void> {
    if (!turn.id) return;
    const fb: Feedback = { rating, state: "sending", ...(flag ? { flag } : {}) };
    this.feedback.set(turn.id, fb);
    this.requestUpdate();
    (ev?.target as HTMLElement | undefined)?.closest("details")?.removeAttribute("open");
    try {
      await this.client.feedback(turn.id, rating, flag);
      fb.state = "sent";
    } catch {
      fb.state = "failed";
    }
    this.requestUpdate();
  }

  // ---- events --------------------------------------------------------------------------

  private onKey(e: KeyboardEvent): void {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      this.send();
    }
  }

  private onHostKey(e: KeyboardEvent): void {
    if (e.key !== "Escape") return;
    if (this.streaming) {
      e.preventDefault();
      this.stop();
    } else if (this.mode === "bubble" && this.open) {
      this.close();
    }
  }

  private close(): void {
    this.dispatchEvent(new CustomEvent("tiergate-close", { bubbles: true, composed: true }));
  }

  private async onLogClick(e: Event): Promise<void> {
    const el = e.target as HTMLElement;
    const cite = el.closest<HTMLElement>("button.cite");
    if (cite) {
      const bubble = cite.closest(".turn");
      const item = bubble?.querySelector<HTMLElement>(`li[data-n="${cite.dataset.cite}"]`);
      item?.scrollIntoView({ block: "nearest" });
      item?.focus();
      return;
    }
    const copy = el.closest<HTMLButtonElement>("button.copy");
    if (copy) {
      const code = copy.parentElement?.querySelector("pre")?.textContent ?? "";
      try {
        await navigator.clipboard.writeText(code);
        copy.textContent = this.t("copied");
      } catch {
        copy.textContent = this.t("copyFailed");
      }
      window.setTimeout(() => (copy.textContent = this.t("copyCode")), 2000);
    }
  }

  // ---- rendering -----------------------------------------------------------------------

  private markdown(turn: Turn): DocumentFragment {
    const hit = this.rendered.get(turn);
    if (hit && hit.content === turn.content) return hit.frag;
    const nums = new Set((turn.meta?.sources ?? []).map((s) => s.n));
    const frag = renderMarkdown(turn.content, nums, {
      copyCode: this.t("copyCode"),
      source: (n) => this.t("source", { n }),
    });
    this.rendered.set(turn, { content: turn.content, frag, text: plainText(frag) });
    return frag;
  }

  private modelText(meta: AnswerMeta | undefined): string {
    const kind = modelKind(meta);
    if (kind === "none") return this.t("modelUnknown");
    if (kind === "small") return this.t("modelSmall");
    if (kind === "large") return this.t("modelLarge");
    return this.t("modelOther", { model: meta?.model ?? "?", backend: meta?.backend ?? "?" });
  }

  private tierText(): string {
    return this.t(this.tier === "user" ? "tierUser" : this.tier === "agent" ? "tierAgent" : "tierAnonymous");
  }

  private renderSources(sources: Source[]) {
    return html`<div class="sources">
      <h3>${this.t("sources")}</h3>
      <ol data-testid="source-list">
        ${sources.map(
          (s) => html`<li value=${s.n} data-n=${s.n} tabindex="-1" data-testid="source-item" data-source-id=${s.id}>
            <span class="title">${s.title || s.source}</span>
            ${path(s).length ? html` — <span class="path">${path(s).join(" › ")}</span>` : nothing}
            ${s.source ? html` — <span class="doc">${s.source}</span>` : nothing}
          </li>`,
        )}
      </ol>
    </div>`;
  }

  private renderFeedback(turn: Turn) {
    const t = this.t;
    const fb = turn.id ? this.feedback.get(turn.id) : undefined;
    const busy = fb?.state === "sending";
    return html`<div class="feedback" role="group" aria-label=${t("feedbackLabel")}>
      <button type="button" data-testid="feedback-up" aria-label=${t("feedbackUp")} aria-pressed=${fb?.rating === "up" && !fb.flag}
        ?disabled=${busy} @click=${() => this.sendFeedback(turn, "up", null)}>${icon(false)}</button>
      <button type="button" data-testid="feedback-down" aria-label=${t("feedbackDown")} aria-pressed=${fb?.rating === "down" && !fb.flag}
        ?disabled=${busy} @click=${() => this.sendFeedback(turn, "down", null)}>${icon(true)}</button>
      <details class="flag">
        <summary data-testid="feedback-flag" aria-label=${t("flagLabel")}>${fb?.flag ? `${t("flag")} ✓` : t("flag")}</summary>
        <div class="menu">
          ${FLAGS.map(
            ([flag, key]) => html`<button type="button" data-testid=${`flag-${flag}`} ?disabled=${busy}
              aria-pressed=${fb?.flag === flag} @click=${(e: Event) => this.sendFeedback(turn, "down", flag, e)}>${t(key)}</button>`,
          )}
        </div>
      </details>
      ${fb?.state === "sent" ? html`<span data-testid="feedback-thanks">${t("thanks")}</span>` : nothing}
      ${fb?.state === "failed" ? html`<span data-testid="feedback-failed">${t("feedbackFailed")}</span>` : nothing}
    </div>`;
  }

  private renderTurn(turn: Turn, i: number) {
    const t = this.t;
    if (turn.role === "user")
      return html`<li class="turn user" data-testid="user-message">
        <div class="who">${t("you")}</div>
        <div class="body">${turn.content}</div>
      </li>`;
    const live = this.streaming && i === this.turns.length - 1;
    const sources = turn.meta?.sources ?? [];
    const note = turn.note;
    const noteText = note ? (note in TRANSLATED ? t(note as Key) : note) : "";
    return html`<li class="turn assistant" data-testid="answer" data-answer-id=${turn.id ?? ""}
      data-model=${turn.meta?.model ?? ""} data-backend=${turn.meta?.backend ?? ""} aria-busy=${live}>
      <div class="who">
        <span>${t("assistant")}</span>
        ${turn.meta?.model || turn.meta?.backend ? html`<span data-testid="answer-model">${this.modelText(turn.meta)}</span>` : nothing}
        ${turn.meta?.upgradeWaking ? html`<span class="tag" data-testid="quick-answer">${t("quickAnswer")}</span>` : nothing}
      </div>
      <div class="body ${live ? "cursor" : ""}">${turn.content ? this.markdown(turn) : live ? html`<span class="muted">${t("thinking")}</span>` : nothing}</div>
      ${noteText ? html`<p class="note" data-testid="answer-note" data-note=${note}>${noteText}</p>` : nothing}
      ${sources.length && !live ? this.renderSources(sources) : nothing}
      ${turn.id && !live && !turn.error ? this.renderFeedback(turn) : nothing}
    </li>`;
  }

  private renderBanner() {
    const b = this.banner;
    if (!b) return nothing;
    const t = this.t;
    const left = b.until !== undefined ? (b.until - this.now) / 1000 : undefined;
    const key: Key = left !== undefined && left <= 0 ? (b.kind === "limit" ? "limitReachedSoon" : b.kind === "waking" ? "wakingNoEta" : b.key) : b.key;
    const text = t(key, { when: left !== undefined ? duration(t, left) : "", message: b.message ?? "" });
    const testid = b.kind === "limit" ? "limit-banner" : b.kind === "waking" ? "waking-banner" : "error-banner";
    return html`<div class="banner ${b.kind === "error" ? "error" : "warn"}" role=${b.kind === "waking" ? "status" : "alert"} data-testid=${testid}>
      <span>${text}</span>
      ${b.kind === "limit" && !this.me
        ? html`<button type="button" data-testid="limit-signin" @click=${() => (this.showAccount = true)}>${t("signIn")}</button>`
        : html`<button type="button" data-testid="banner-retry" @click=${this.retry}>${t("retry")}</button>`}
    </div>`;
  }

  private renderStatusLine() {
    const t = this.t;
    const m = this.lastMeta;
    const anon = this.tier === "anonymous";
    const parts: TemplateResult[] = [];
    if (anon && m?.remaining !== undefined)
      parts.push(html`<span data-testid="remaining" data-remaining=${m.remaining}>${
        m.limit !== undefined ? t("remaining", { n: m.remaining, limit: m.limit }) : t("remainingNoLimit", { n: m.remaining })
      }</span>`);
    if (anon && m?.remaining !== undefined && m.remaining <= 5 && !this.showAccount)
      parts.push(html`<button type="button" data-testid="signin-nudge" @click=${() => (this.showAccount = true)}>${t("signInNudge")}</button>`);
    if (this.largeReady) parts.push(html`<span role="status" data-testid="large-ready">${t("largeReady")}</span>`);
    return parts.length ? html`<div class="statusline">${parts}</div>` : nothing;
  }

  override render() {
    const t = this.t;
    const last = this.turns[this.turns.length - 1];
    const canRetry = !this.streaming && this.turns.some((x) => x.role === "user") && (last?.role === "user" || !!last?.error || !!last?.note);
    return html`<section class="chat" aria-label=${t("title")} @keydown=${this.onHostKey}>
      <header>
        <h1>${t("title")}</h1>
        <div class="labels">
          <span class="pill" data-testid="tier-label" data-tier=${this.tier}><span class="muted">${t("tierLabel")}: </span>${this.tierText()}</span>
          <span class="pill" data-testid="model-label" data-model=${this.lastMeta?.model ?? ""} data-backend=${this.lastMeta?.backend ?? ""}
            ><span class="muted">${t("modelLabel")}: </span>${this.modelText(this.lastMeta)}${this.largeWaking ? " ⏳" : ""}</span>
        </div>
        <div class="tools">
          <button type="button" data-testid="account-toggle" aria-expanded=${this.showAccount}
            @click=${() => (this.showAccount = !this.showAccount)}>${this.me ? t("account") : t("signIn")}</button>
          <button type="button" data-testid="new-conversation" @click=${this.newConversation}>${t("newConversation")}</button>
          ${this.mode === "bubble" ? html`<button type="button" data-testid="close" aria-label=${t("close")} @click=${this.close}>✕</button>` : nothing}
        </div>
      </header>
      <p class="notice" data-testid="ai-notice">${t("aiNotice")}${this.contact ? html` <span data-testid="contact">${t("contact")} ${this.contact}</span>` : nothing}</p>
      ${this.showAccount
        ? html`<tiergate-account .api=${this.client} .t=${t} .me=${this.me} .lang=${this.lang}
            @tiergate-signed-in=${this.onSignedIn} @tiergate-signed-out=${this.onSignedOut}
            @tiergate-consent=${this.onConsent} @tiergate-open-conversation=${this.onOpenConversation}></tiergate-account>`
        : nothing}
      <ol class="log" aria-label=${t("title")} data-testid="messages" @click=${this.onLogClick}>
        ${repeat(this.turns, (turn) => turn, (turn, i) => this.renderTurn(turn, i))}
      </ol>
      ${this.renderBanner()} ${this.renderStatusLine()}
      <form class="composer" @submit=${(e: Event) => { e.preventDefault(); this.send(); }}>
        <label class="sr-only" for="tg-input">${t("inputLabel")}</label>
        <textarea id="tg-input" rows="2" data-testid="chat-input" placeholder=${t("inputPlaceholder")} @keydown=${this.onKey}></textarea>
        ${this.streaming
          ? html`<button type="button" class="primary" data-testid="stop" @click=${this.stop}>${t("stop")}</button>`
          : html`<button type="submit" class="primary" data-testid="send">${t("send")}</button>`}
        ${canRetry ? html`<button type="button" data-testid="retry" @click=${this.retry}>${t("retry")}</button>` : nothing}
      </form>
      <div class="sr-only" aria-live="polite" aria-atomic="true" data-testid="announcer">${this.announce}</div>
    </section>`;
  }
}

const TRANSLATED: Record<string, true> = { stopped: true, errorNetwork: true, guardCut: true, contentFilter: true, lengthCut: true };

if (!customElements.get("tiergate-chat-app")) customElements.define("tiergate-chat-app", TiergateChatApp);
