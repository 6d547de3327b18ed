// The composer: the labelled textarea (Enter sends, Shift+Enter is a new line), Send or
// Stop while streaming, Retry when the last turn failed or was cut, and the polite live
// region that announces a finished answer to screen readers.
import { html, nothing, type TemplateResult } from "lit";
import type { T } from "./labels";

export interface ComposerView {
  t: T;
  streaming: boolean;
  canRetry: boolean;
  announce: string;
  send: () => void;
  stop: () => void;
  retry: () => void;
}

export function renderComposer(v: ComposerView): TemplateResult {
  const t = v.t;
  const onKey = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      v.send();
    }
  };
  return html`<form class="composer" @submit=${(e: Event) => { e.preventDefault(); v.send(); }}>
      <label class="sr-only" for="tg-input">${t("inputLabel")}</label>
      <textarea id="tg-input" rows="2" data-testid="chat-input" placeholder=${t("inputPlaceholder")} @keydown=${onKey}></textarea>
      ${v.streaming
        ? html`<button type="button" class="primary" data-testid="stop" @click=${v.stop}>${t("stop")}</button>`
        : html`<button type="submit" class="primary" data-testid="send">${t("send")}</button>`}
      ${v.canRetry ? html`<button type="button" data-testid="retry" @click=${v.retry}>${t("retry")}</button>` : nothing}
    </form>
    <div class="sr-only" aria-live="polite" aria-atomic="true" data-testid="announcer">${v.announce}</div>`;
}
