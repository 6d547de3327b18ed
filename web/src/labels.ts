// The chat's tier-aware chrome: the header with the tier and model labels, the banners
// (limit reached, model waking, errors) and the status line (remaining anonymous requests,
// the sign-in nudge, "the large model is ready"). Pure render functions of the chat's state,
// so the element keeps the state and this file only says how it reads.
import { html, nothing, svg, type TemplateResult } from "lit";
import type { AnswerMeta } from "./api";
import { duration, type Key, type translator } from "./i18n";

export type T = ReturnType<typeof translator>;

// An hourglass as inline SVG: the emoji needs a font the visitor may not have (a blank box).
const HOURGLASS = html`<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">${svg`<path
  d="M6 2h12v6l-4 4 4 4v6H6v-6l4-4-4-4V2zm2 2v3.2l4 4 4-4V4H8zm4 9.8-4 4V20h8v-2.2l-4-4z"/>`}</svg>`;
export type Banner = { kind: "limit" | "waking" | "error"; until?: number; key: Key; message?: string };

/** "small model on CPU" / "large model on GPU" from what answered; anything else verbatim. */
export function modelKind(meta: AnswerMeta | undefined): "small" | "large" | "other" | "none" {
  if (!meta?.model && !meta?.backend) return "none";
  const b = (meta.backend ?? "").toLowerCase();
  const m = (meta.model ?? "").toLowerCase();
  if (b.startsWith("gpu") || (!b && m.includes("large"))) return "large";
  if (b.startsWith("cpu") || (!b && m.includes("small"))) return "small";
  return "other";
}

export function modelText(t: T, meta: AnswerMeta | undefined): string {
  const kind = modelKind(meta);
  if (kind === "none") return t("modelUnknown");
  if (kind === "small") return t("modelSmall");
  if (kind === "large") return t("modelLarge");
  return t("modelOther", { model: meta?.model ?? "?", backend: meta?.backend ?? "?" });
}

export function tierText(t: T, tier: string): string {
  return t(tier === "user" ? "tierUser" : tier === "agent" ? "tierAgent" : "tierAnonymous");
}

export interface HeaderView {
  t: T;
  tier: string;
  lastMeta: AnswerMeta | undefined;
  largeWaking: boolean;
  signedIn: boolean;
  showAccount: boolean;
  bubble: boolean;
  toggleAccount: () => void;
  newConversation: () => void;
  close: () => void;
}

/** The title, the tier and model labels (what answered last; an hourglass while the large
 * model wakes) and the header's buttons. */
export function renderHeader(v: HeaderView): TemplateResult {
  const t = v.t;
  return html`<header>
    <h1>${t("title")}</h1>
    <div class="labels">
      <span class="pill" data-testid="tier-label" data-tier=${v.tier}><span class="muted">${t("tierLabel")}: </span>${tierText(t, v.tier)}</span>
      <span class="pill" data-testid="model-label" data-model=${v.lastMeta?.model ?? ""} data-backend=${v.lastMeta?.backend ?? ""}
        ><span class="muted">${t("modelLabel")}: </span>${modelText(t, v.lastMeta)}${v.largeWaking
          ? html` <span data-testid="large-waking" title=${t("largeWaking")}>${HOURGLASS}<span class="sr-only">${t("largeWaking")}</span></span>`
          : nothing}</span>
    </div>
    <div class="tools">
      <button type="button" data-testid="account-toggle" aria-expanded=${v.showAccount}
        @click=${v.toggleAccount}>${v.signedIn ? t("account") : t("signIn")}</button>
      <button type="button" data-testid="new-conversation" @click=${v.newConversation}>${t("newConversation")}</button>
      ${v.bubble ? html`<button type="button" data-testid="close" aria-label=${t("close")} @click=${v.close}>✕</button>` : nothing}
    </div>
  </header>`;
}

export interface BannerView {
  t: T;
  banner: Banner | null;
  now: number;
  signedIn: boolean;
  signIn: () => void;
  retry: () => void;
}

/** The one banner shown above the composer; a timed one counts down to "soon". */
export function renderBanner(v: BannerView): TemplateResult | typeof nothing {
  const b = v.banner;
  if (!b) return nothing;
  const t = v.t;
  const left = b.until !== undefined ? (b.until - v.now) / 1000 : undefined;
  const key: Key = left !== undefined && left <= 0 ? (b.kind === "limit" ? "limitReachedSoon" : b.kind === "waking" ? "wakingNoEta" : b.key) : b.key;
  const text = t(key, { when: left !== undefined ? duration(t, left) : "", message: b.message ?? "" });
  const testid = b.kind === "limit" ? "limit-banner" : b.kind === "waking" ? "waking-banner" : "error-banner";
  return html`<div class="banner ${b.kind === "error" ? "error" : "warn"}" role=${b.kind === "waking" ? "status" : "alert"} data-testid=${testid}>
    <span>${text}</span>
    ${b.kind === "limit" && !v.signedIn
      ? html`<button type="button" data-testid="limit-signin" @click=${v.signIn}>${t("signIn")}</button>`
      : html`<button type="button" data-testid="banner-retry" @click=${v.retry}>${t("retry")}</button>`}
  </div>`;
}

export interface StatusLineView {
  t: T;
  tier: string;
  lastMeta: AnswerMeta | undefined;
  showAccount: boolean;
  largeReady: boolean;
  signIn: () => void;
}

/** Remaining anonymous requests, the sign-in nudge when few are left, "large model ready". */
export function renderStatusLine(v: StatusLineView): TemplateResult | typeof nothing {
  const t = v.t;
  const m = v.lastMeta;
  const anon = v.tier === "anonymous";
  const parts: TemplateResult[] = [];
  if (anon && m?.remaining !== undefined)
    parts.push(html`<span data-testid="remaining" data-remaining=${m.remaining}>${
      m.limit !== undefined ? t("remaining", { n: m.remaining, limit: m.limit }) : t("remainingNoLimit", { n: m.remaining })
    }</span>`);
  if (anon && m?.remaining !== undefined && m.remaining <= 5 && !v.showAccount)
    parts.push(html`<button type="button" data-testid="signin-nudge" @click=${v.signIn}>${t("signInNudge")}</button>`);
  if (v.largeReady) parts.push(html`<span role="status" data-testid="large-ready">${t("largeReady")}</span>`);
  return parts.length ? html`<div class="statusline">${parts}</div>` : nothing;
}
