// The chat itself (the lazily loaded chunk): the element's state and its flow — streaming
// answers, stop/retry/new conversation, the session, the tier and model read from the
// gateway's response headers, the small-model-while-the-large-wakes upgrade (polling
// /v1/status), the limit and waking states. How it looks lives next door: answers.ts (the
// message list), labels.ts (header labels, banners, status line), composer.ts.
import { LitElement, html, nothing, type PropertyValues } from "lit";
import { repeat } from "lit/directives/repeat.js";
import "./account";
import type { TiergateAccount } from "./account";
import { Answers } from "./answers";
import { Api, HttpError, type AnswerMeta, type ChatMessage, type Me } from "./api";
import { renderComposer } from "./composer";
import { translator } from "./i18n";
import { modelKind, renderBanner, renderHeader, renderStatusLine, type Banner } from "./labels";
import { sseChunks } from "./sse";
import { loadConversation, saveConversation, setSignedInHint, signedInHint, uuid, type Turn } from "./store";
import { styles } from "./styles";
import { StatusPoller } from "./upgrade";

export { modelKind };

const ANON_MODEL = "tiergate-small";

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
  private answers = new Answers(this, (id, rating, flag) => this.client.feedback(id, rating, flag));
  private poller = new StatusPoller(
    () => this.client.status(),
    (s) => (this.contact = s.contact ?? null),
    () => {
      if (this.largeWaking) this.largeReady = true;
      this.largeWaking = false;
      if (this.banner?.kind === "waking") this.banner = { ...this.banner, until: Date.now() };
    },
  );
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
    this.poller.stop();
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
      if (!answer.error && answer.content) this.announce = this.t("announceAnswer", { text: this.answers.text(answer, this.t) });
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
      // The session is gone (the client refreshed what could be refreshed): ask as a visitor.
      this.setMe(null);
      return this.ask(true);
    }
    if (this.me?.store_chats && this.showAccount)
      void this.renderRoot.querySelector<TiergateAccount>("tiergate-account")?.reloadHistory(this.me, this.conversationId);
  }

  private applyMeta(meta: AnswerMeta): void {
    if (meta.tier) this.tier = meta.tier;
    this.lastMeta = meta;
    if (meta.upgradeWaking) {
      this.largeReady = false;
      if (!this.largeWaking) {
        this.largeWaking = true;
        this.poller.start(this.askModel(), meta.model);
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
      this.poller.start(this.askModel(), undefined);
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

  // ---- events --------------------------------------------------------------------------

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

  // ---- rendering -----------------------------------------------------------------------

  override render() {
    const t = this.t;
    const last = this.turns[this.turns.length - 1];
    const canRetry = !this.streaming && this.turns.some((x) => x.role === "user") && (last?.role === "user" || !!last?.error || !!last?.note);
    const signIn = () => (this.showAccount = true);
    return html`<section class="chat" aria-label=${t("title")} @keydown=${this.onHostKey}>
      ${renderHeader({
        t,
        tier: this.tier,
        lastMeta: this.lastMeta,
        largeWaking: this.largeWaking,
        signedIn: !!this.me,
        showAccount: this.showAccount,
        bubble: this.mode === "bubble",
        toggleAccount: () => (this.showAccount = !this.showAccount),
        newConversation: () => this.newConversation(),
        close: () => this.close(),
      })}
      <p class="notice" data-testid="ai-notice">${t("aiNotice")}${this.contact ? html` <span data-testid="contact">${t("contact")} ${this.contact}</span>` : nothing}</p>
      ${this.showAccount
        ? html`<tiergate-account .api=${this.client} .t=${t} .me=${this.me} .lang=${this.lang}
            @tiergate-signed-in=${this.onSignedIn} @tiergate-signed-out=${this.onSignedOut}
            @tiergate-consent=${this.onConsent} @tiergate-open-conversation=${this.onOpenConversation}></tiergate-account>`
        : nothing}
      <ol class="log" aria-label=${t("title")} data-testid="messages" @click=${(e: Event) => this.answers.onClick(e, t)}>
        ${repeat(this.turns, (turn) => turn, (turn, i) => this.answers.renderTurn(turn, this.streaming && i === this.turns.length - 1, t))}
      </ol>
      ${renderBanner({ t, banner: this.banner, now: this.now, signedIn: !!this.me, signIn, retry: () => this.retry() })}
      ${renderStatusLine({ t, tier: this.tier, lastMeta: this.lastMeta, showAccount: this.showAccount, largeReady: this.largeReady, signIn })}
      ${renderComposer({
        t,
        streaming: this.streaming,
        canRetry,
        announce: this.announce,
        send: () => this.send(),
        stop: () => this.stop(),
        retry: () => this.retry(),
      })}
    </section>`;
  }
}

if (!customElements.get("tiergate-chat-app")) customElements.define("tiergate-chat-app", TiergateChatApp);
