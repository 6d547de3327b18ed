// The account panel: sign-in by an e-mailed 6-digit code (cookie mode: the gateway sets
// HttpOnly cookies and the page never sees a token), sign-out, the consent switch for keeping
// chats, and — for consenting users — the history with erase. It renders into the chat's own
// shadow root (no shadow root of its own) so it shares the chat's styles and test hooks.
import { LitElement, html, nothing } from "lit";
import { Api, HttpError, type HistoryItem, type Me } from "./api";
import type { Key } from "./i18n";
import type { Turn } from "./store";

type T = (key: Key, vars?: Record<string, string | number>) => string;

interface Conversation {
  id: string;
  title: string;
  when: Date;
  latest: HistoryItem;
}

function toDate(v: number | string): Date {
  return typeof v === "number" ? new Date(v < 1e12 ? v * 1000 : v) : new Date(v);
}

/** History items are one exchange each; the list shows one row per conversation. */
function group(items: HistoryItem[]): Conversation[] {
  const by = new Map<string, Conversation>();
  for (const it of items) {
    const when = toDate(it.created_at);
    const cur = by.get(it.conversation_id);
    if (!cur || when > cur.when) {
      const first = it.messages.find((m) => m.role === "user")?.content ?? "";
      by.set(it.conversation_id, { id: it.conversation_id, title: first, when, latest: it });
    }
  }
  return [...by.values()].sort((a, b) => b.when.getTime() - a.when.getTime());
}

export class TiergateAccount extends LitElement {
  static properties = {
    api: { attribute: false },
    t: { attribute: false },
    me: { attribute: false },
    lang: {},
    step: { state: true },
    email: { state: true },
    busy: { state: true },
    error: { state: true },
    items: { state: true },
    hasMore: { state: true },
    lastId: { state: true },
  };
  declare api: Api;
  declare t: T;
  declare me: Me | null;
  declare lang: string;
  declare step: "email" | "code";
  declare email: string;
  declare busy: boolean;
  declare error: string;
  declare items: HistoryItem[];
  declare hasMore: boolean;
  declare lastId: string | null;

  constructor() {
    super();
    this.me = null;
    this.step = "email";
    this.email = "";
    this.busy = false;
    this.error = "";
    this.items = [];
    this.hasMore = false;
    this.lastId = null;
  }

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    if (this.me?.store_chats) void this.reloadHistory();
  }

  private emit(name: string, detail?: unknown): void {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  private fail(e: unknown): void {
    const msg = e instanceof HttpError ? e.message : e instanceof Error ? e.message : String(e);
    this.error = this.t("signInFailed", { message: msg });
  }

  private async start(ev: SubmitEvent): Promise<void> {
    ev.preventDefault();
    const input = (ev.target as HTMLFormElement).elements.namedItem("email") as HTMLInputElement;
    const email = input.value.trim();
    if (!input.checkValidity() || !email) {
      input.reportValidity();
      return;
    }
    this.busy = true;
    this.error = "";
    try {
      await this.api.otpStart(email);
      this.email = email;
      this.step = "code";
      await this.updateComplete;
      this.querySelector<HTMLInputElement>('[data-testid="signin-code"]')?.focus();
    } catch (e) {
      this.fail(e);
    } finally {
      this.busy = false;
    }
  }

  private async verify(ev: SubmitEvent): Promise<void> {
    ev.preventDefault();
    const input = (ev.target as HTMLFormElement).elements.namedItem("code") as HTMLInputElement;
    const code = input.value.replace(/\s+/g, "");
    if (!/^\d{6}$/.test(code)) {
      this.error = this.t("codeInvalid");
      input.focus();
      return;
    }
    this.busy = true;
    this.error = "";
    try {
      const me = await this.api.otpVerify(this.email, code);
      // The code was right, but is the session here? A browser that refuses the cookies
      // (a cross-site embed with SameSite cookies, or third-party cookies blocked) keeps
      // none: ask who we are before saying "signed in".
      try {
        await this.api.me();
      } catch (e) {
        if (e instanceof HttpError && e.status === 401) {
          this.error = this.t("cookiesRefused");
          return;
        }
        throw e;
      }
      this.step = "email";
      this.emit("tiergate-signed-in", { ...me, email: me.email ?? this.email });
    } catch (e) {
      this.fail(e);
    } finally {
      this.busy = false;
    }
  }

  private async signOut(): Promise<void> {
    this.busy = true;
    try {
      await this.api.logout();
    } catch {
      /* the session is gone either way; forget it locally */
    } finally {
      this.busy = false;
      this.items = [];
      this.emit("tiergate-signed-out");
    }
  }

  private async setConsent(ev: Event): Promise<void> {
    const box = ev.target as HTMLInputElement;
    const on = box.checked;
    this.busy = true;
    this.error = "";
    try {
      const r = await this.api.consent(on);
      const me = { ...this.me!, ...r, store_chats: r?.store_chats ?? on };
      this.emit("tiergate-consent", me);
      if (me.store_chats) await this.reloadHistory(me);
      else this.items = [];
    } catch (e) {
      box.checked = !on;
      this.fail(e);
    } finally {
      this.busy = false;
    }
  }

  /** Re-reads the first page of kept chats (after sign-in, consent, or a new answer). The
   * gateway keeps an exchange once its stream has ended, a moment after the widget saw
   * `[DONE]`, so when `expect` names a conversation the read is retried briefly until it
   * shows up. */
  async reloadHistory(me: Me | null = this.me, expect?: string): Promise<void> {
    if (!me?.store_chats) return;
    for (const wait of expect ? [0, 400, 1000, 2000, 4000] : [0]) {
      if (wait) await new Promise((r) => setTimeout(r, wait));
      try {
        const page = await this.api.history();
        this.items = page.data;
        this.hasMore = page.has_more;
        this.lastId = page.last_id;
        if (!expect || page.data.some((i) => i.conversation_id === expect)) return;
      } catch (e) {
        this.fail(e);
        return;
      }
    }
  }

  private async more(): Promise<void> {
    try {
      const page = await this.api.history(this.lastId);
      this.items = [...this.items, ...page.data];
      this.hasMore = page.has_more;
      this.lastId = page.last_id;
    } catch (e) {
      this.fail(e);
    }
  }

  private async erase(id: string | null): Promise<void> {
    this.busy = true;
    try {
      if (id) await this.api.eraseConversation(id);
      else await this.api.eraseAll();
      this.items = id ? this.items.filter((i) => i.conversation_id !== id) : [];
      this.emit("tiergate-erased", id);
    } catch (e) {
      this.fail(e);
    } finally {
      this.busy = false;
    }
  }

  private open(c: Conversation): void {
    const turns: Turn[] = c.latest.messages
      .filter((m) => m.role === "user" || m.role === "assistant")
      .map((m) => ({ role: m.role as "user" | "assistant", content: m.content }));
    turns.push({ role: "assistant", content: c.latest.answer.content, meta: { model: c.latest.model } });
    this.emit("tiergate-open-conversation", { conversationId: c.id, turns });
  }

  private renderSignIn() {
    const t = this.t;
    if (this.step === "email")
      return html`<form @submit=${this.start} novalidate>
        <label for="tg-email">${t("email")}</label>
        <input id="tg-email" name="email" type="email" autocomplete="email" required
          data-testid="signin-email" .value=${this.email} ?disabled=${this.busy} />
        <button class="primary" type="submit" data-testid="signin-send-code" ?disabled=${this.busy}>${t("sendCode")}</button>
      </form>`;
    return html`<p data-testid="signin-code-sent">${t("codeSent", { email: this.email })}</p>
      <form @submit=${this.verify} novalidate>
        <label for="tg-code">${t("code")}</label>
        <input id="tg-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
          maxlength="6" pattern="[0-9]{6}" required data-testid="signin-code" ?disabled=${this.busy} />
        <button class="primary" type="submit" data-testid="signin-verify" ?disabled=${this.busy}>${t("verify")}</button>
        <button type="button" data-testid="signin-back" @click=${() => { this.step = "email"; this.error = ""; }}>${t("back")}</button>
      </form>`;
  }

  private renderHistory() {
    const t = this.t;
    const convs = group(this.items);
    const fmt = new Intl.DateTimeFormat(this.lang, { dateStyle: "medium", timeStyle: "short" });
    return html`<h2 id="tg-history">${t("history")}</h2>
      ${convs.length === 0
        ? html`<p class="muted" data-testid="history-empty">${t("historyEmpty")}</p>`
        : html`<ul class="history" aria-labelledby="tg-history">
              ${convs.map(
                (c) => html`<li data-testid="history-item" data-conversation-id=${c.id}>
                  <span class="title">${c.title || t("untitled")}</span>
                  <span class="muted">${fmt.format(c.when)}</span>
                  <button type="button" data-testid="history-open" @click=${() => this.open(c)}
                    aria-label=${`${t("open")}: ${c.title || t("untitled")}`}>${t("open")}</button>
                  <button type="button" data-testid="history-erase" ?disabled=${this.busy}
                    aria-label=${`${t("eraseConversation")}: ${c.title || t("untitled")}`}
                    @click=${() => this.erase(c.id)}>${t("erase")}</button>
                </li>`,
              )}
            </ul>
            <div class="row">
              ${this.hasMore ? html`<button type="button" data-testid="history-more" @click=${this.more}>${t("historyMore")}</button>` : nothing}
              <button type="button" data-testid="history-erase-all" ?disabled=${this.busy} @click=${() => this.erase(null)}>${t("eraseAll")}</button>
            </div>`}`;
  }

  override render() {
    const t = this.t;
    const me = this.me;
    return html`<section class="account" aria-labelledby="tg-account" data-testid="account-panel">
      <h2 id="tg-account">${me ? t("signedInAs") : t("signIn")}</h2>
      ${this.error ? html`<p class="banner error" role="alert" data-testid="signin-error">${this.error}</p>` : nothing}
      ${me
        ? html`<div class="row">
              ${me.email ? html`<span data-testid="signed-in-email">${me.email}</span>` : nothing}
              <button type="button" data-testid="signout" ?disabled=${this.busy} @click=${this.signOut}>${t("signOut")}</button>
            </div>
            <div class="consent">
              <input id="tg-consent" type="checkbox" role="switch" data-testid="consent-switch"
                .checked=${me.store_chats} ?disabled=${this.busy} @change=${this.setConsent} />
              <label for="tg-consent">${t("consent")}</label>
            </div>
            ${me.store_chats ? this.renderHistory() : nothing}`
        : this.renderSignIn()}
    </section>`;
  }
}

if (!customElements.get("tiergate-account")) customElements.define("tiergate-account", TiergateAccount);
