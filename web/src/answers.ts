// The message list: each turn rendered (the user's as text, the answer as sanitized Markdown
// with its model label, quick-answer tag, note, sources and feedback), the rendered-Markdown
// cache (streaming re-renders only the answer whose text changed), the feedback state per
// answer, and the list's clicks (a citation focuses its source; Copy copies a code block).
import { html, nothing, svg, type ReactiveControllerHost, type TemplateResult } from "lit";
import type { Source } from "./api";
import type { Key } from "./i18n";
import { modelText, type T } from "./labels";
import { plainText, renderMarkdown } from "./markdown";
import type { Turn } from "./store";

type Feedback = { rating?: "up" | "down"; flag?: string; state: "sent" | "failed" | "sending" };
type SendFeedback = (id: string, rating: "up" | "down", flag: string | null) => Promise<unknown>;

const FLAGS = [
  ["inappropriate", "flagInappropriate"],
  ["wrong", "flagWrong"],
  ["unsafe", "flagUnsafe"],
  ["other", "flagOther"],
] as const;

/** Notes that are i18n keys; any other note is an error message shown verbatim. */
const TRANSLATED: Record<string, true> = { stopped: true, errorNetwork: true, guardCut: true, contentFilter: true, lengthCut: true };

// Icons are inline SVG: emoji glyphs depend on fonts the visitor may not have.
const THUMB = svg`<path d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6c-.4.4-.6.9-.6 1.4v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1.2-.7v-2z"/>`;
const icon = (flip: boolean) =>
  html`<svg class="icon ${flip ? "flip" : ""}" viewBox="0 0 24 24" aria-hidden="true" focusable="false">${THUMB}</svg>`;

/** The heading path without its first entry when that just repeats the title. */
const path = (s: Source): string[] => (s.heading_path[0] === s.title ? s.heading_path.slice(1) : s.heading_path);

export class Answers {
  private feedback = new Map<string, Feedback>();
  private rendered = new WeakMap<Turn, { content: string; frag: DocumentFragment; text: string }>();

  constructor(
    private readonly host: ReactiveControllerHost,
    private readonly send: SendFeedback,
  ) {}

  /** The answer's Markdown as a sanitized fragment, re-rendered only when its text changed. */
  markdown(turn: Turn, t: T): DocumentFragment {
    const hit = this.rendered.get(turn);
    if (hit && hit.content === turn.content) return hit.frag;
    const nums = new Set((turn.meta?.sources ?? []).map((s) => s.n));
    const frag = renderMarkdown(turn.content, nums, {
      copyCode: t("copyCode"),
      source: (n) => t("source", { n }),
    });
    this.rendered.set(turn, { content: turn.content, frag, text: plainText(frag) });
    return frag;
  }

  /** The answer as plain text, for the screen-reader announcement. */
  text(turn: Turn, t: T): string {
    this.markdown(turn, t);
    return this.rendered.get(turn)?.text ?? turn.content;
  }

  private async sendFeedback(turn: Turn, rating: "up" | "down", flag: string | null, ev?: Event): Promise<void> {
    if (!turn.id) return;
    const fb: Feedback = { rating, state: "sending", ...(flag ? { flag } : {}) };
    this.feedback.set(turn.id, fb);
    this.host.requestUpdate();
    (ev?.target as HTMLElement | undefined)?.closest("details")?.removeAttribute("open");
    try {
      await this.send(turn.id, rating, flag);
      fb.state = "sent";
    } catch {
      fb.state = "failed";
    }
    this.host.requestUpdate();
  }

  /** A citation focuses its source under the same answer; Copy copies its code block. */
  async onClick(e: Event, t: T): Promise<void> {
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
        copy.textContent = t("copied");
      } catch {
        copy.textContent = t("copyFailed");
      }
      window.setTimeout(() => (copy.textContent = t("copyCode")), 2000);
    }
  }

  private renderSources(sources: Source[], t: T): TemplateResult {
    return html`<div class="sources">
      <h3>${t("sources")}</h3>
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

  private renderFeedback(turn: Turn, t: T): TemplateResult {
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

  /** One turn; `live` is the answer still streaming (no sources or feedback yet). */
  renderTurn(turn: Turn, live: boolean, t: T): TemplateResult {
    if (turn.role === "user")
      return html`<li class="turn user" data-testid="user-message">
        <div class="who">${t("you")}</div>
        <div class="body">${turn.content}</div>
      </li>`;
    const sources = turn.meta?.sources ?? [];
    const note = turn.note;
    const noteText = note ? (note in TRANSLATED ? t(note as Key) : note) : "";
    return html`<li class="turn assistant" data-testid="answer" data-answer-id=${turn.id ?? ""}
      data-model=${turn.meta?.model ?? ""} data-backend=${turn.meta?.backend ?? ""} aria-busy=${live}>
      <div class="who">
        <span>${t("assistant")}</span>
        ${turn.meta?.model || turn.meta?.backend ? html`<span data-testid="answer-model">${modelText(t, turn.meta)}</span>` : nothing}
        ${turn.meta?.upgradeWaking ? html`<span class="tag" data-testid="quick-answer">${t("quickAnswer")}</span>` : nothing}
      </div>
      <div class="body ${live ? "cursor" : ""}">${turn.content ? this.markdown(turn, t) : live ? html`<span class="muted">${t("thinking")}</span>` : nothing}</div>
      ${noteText ? html`<p class="note" data-testid="answer-note" data-note=${note}>${noteText}</p>` : nothing}
      ${sources.length && !live ? this.renderSources(sources, t) : nothing}
      ${turn.id && !live && !turn.error ? this.renderFeedback(turn, t) : nothing}
    </li>`;
  }
}
