// The chat's styles: Lit adopts them as a constructed stylesheet in the shadow root, so they
// work under `style-src 'self'` and never leak into (or inherit rules from) the host page.
// Colours are chosen for WCAG AA (≥ 4.5:1 for text) in both light and dark schemes.
import { css } from "lit";
import { answerStyles } from "./answer-styles";

const layout = css`
  :host {
    --bg: #ffffff;
    --fg: #1b1b1f;
    --muted: #4d4d57;
    --border: #c4c4cc;
    --accent: #0b57d0;
    --accent-fg: #ffffff;
    --user-bg: #e8effc;
    --panel: #f4f5f8;
    --warn-bg: #fff4d6;
    --warn-fg: #4a3500;
    --err-bg: #fde7e7;
    --err-fg: #7a1111;
    --focus: #6b2fbf;
    display: block;
    height: 100%;
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    color: var(--fg);
  }
  @media (prefers-color-scheme: dark) {
    :host {
      --bg: #17181c;
      --fg: #ececf1;
      --muted: #b9b9c6;
      --border: #50515c;
      --accent: #8ab4f8;
      --accent-fg: #0b1b33;
      --user-bg: #233250;
      --panel: #22242a;
      --warn-bg: #3d3116;
      --warn-fg: #ffe3a1;
      --err-bg: #4a1c1c;
      --err-fg: #ffd2d2;
      --focus: #d0b0ff;
    }
  }
  :host([mode="bubble"]:not([open])) .chat {
    display: none;
  }
  :host([mode="bubble"]) .chat {
    position: fixed;
    z-index: 2147483001;
    right: 1.25rem;
    bottom: 5.5rem;
    width: min(25rem, calc(100vw - 2.5rem));
    height: min(38rem, calc(100vh - 7rem));
    border: 1px solid var(--border);
    border-radius: 12px;
    box-shadow: 0 8px 30px rgba(0, 0, 0, 0.25);
  }
  * {
    box-sizing: border-box;
  }
  .chat {
    display: flex;
    flex-direction: column;
    height: 100%;
    background: var(--bg);
    color: var(--fg);
    overflow: hidden;
  }
  header {
    display: flex;
    flex-wrap: wrap;
    align-items: center;
    gap: 0.4rem 0.75rem;
    padding: 0.5rem 0.75rem;
    border-bottom: 1px solid var(--border);
  }
  h1 {
    font-size: 1rem;
    margin: 0;
    margin-right: auto;
  }
  .labels {
    display: flex;
    gap: 0.4rem;
    flex-wrap: wrap;
    font-size: 0.85rem;
  }
  .pill {
    border: 1px solid var(--border);
    border-radius: 999px;
    padding: 0 0.5rem;
    color: var(--fg);
    background: var(--panel);
  }
  .tools {
    display: flex;
    gap: 0.4rem;
  }
  button,
  input,
  textarea {
    font: inherit;
    color: inherit;
  }
  button {
    cursor: pointer;
    border: 1px solid var(--border);
    background: var(--panel);
    border-radius: 6px;
    padding: 0.3rem 0.65rem;
    min-height: 2rem;
  }
  button.primary {
    background: var(--accent);
    color: var(--accent-fg);
    border-color: var(--accent);
  }
  button:disabled {
    cursor: not-allowed;
    opacity: 0.6;
  }
  button[aria-pressed="true"] {
    background: var(--accent);
    color: var(--accent-fg);
  }
  :focus-visible {
    outline: 3px solid var(--focus);
    outline-offset: 2px;
  }
  .notice {
    margin: 0;
    padding: 0.35rem 0.75rem;
    font-size: 0.85rem;
    color: var(--muted);
    border-bottom: 1px solid var(--border);
  }
`;

const after = css`
  .banner {
    margin: 0 0.75rem 0.5rem;
    padding: 0.5rem 0.7rem;
    border-radius: 6px;
    display: flex;
    flex-wrap: wrap;
    gap: 0.5rem;
    align-items: center;
    justify-content: space-between;
  }
  .banner.warn {
    background: var(--warn-bg);
    color: var(--warn-fg);
  }
  .banner.error {
    background: var(--err-bg);
    color: var(--err-fg);
  }
  .statusline {
    display: flex;
    flex-wrap: wrap;
    gap: 0.5rem;
    align-items: center;
    padding: 0 0.75rem 0.3rem;
    font-size: 0.85rem;
    color: var(--muted);
  }
  form.composer {
    display: flex;
    gap: 0.5rem;
    align-items: flex-end;
    padding: 0.5rem 0.75rem 0.75rem;
    border-top: 1px solid var(--border);
  }
  textarea {
    flex: 1 1 auto;
    resize: none;
    min-height: 2.6rem;
    max-height: 10rem;
    padding: 0.45rem 0.6rem;
    border: 1px solid var(--border);
    border-radius: 6px;
    background: var(--bg);
  }
  tiergate-account {
    display: block;
    flex: 0 1 auto;
    max-height: 55%;
    overflow-y: auto;
    border-bottom: 1px solid var(--border);
    background: var(--panel);
  }
  .account {
    padding: 0.6rem 0.75rem;
    font-size: 0.9rem;
  }
  .account h2 {
    font-size: 0.95rem;
    margin: 0 0 0.4rem;
  }
  .account form,
  .account .row {
    display: flex;
    flex-wrap: wrap;
    gap: 0.4rem;
    align-items: center;
    margin: 0.3rem 0;
  }
  .account input[type="email"],
  .account input[type="text"] {
    padding: 0.3rem 0.5rem;
    border: 1px solid var(--border);
    border-radius: 6px;
    background: var(--bg);
    min-width: 12rem;
  }
  .consent {
    display: flex;
    gap: 0.5rem;
    align-items: flex-start;
    margin: 0.4rem 0;
  }
  .consent input {
    width: 1.2rem;
    height: 1.2rem;
    margin-top: 0.15rem;
    accent-color: var(--accent);
  }
  .history {
    list-style: none;
    margin: 0.3rem 0;
    padding: 0;
  }
  .history li {
    display: flex;
    gap: 0.4rem;
    align-items: center;
    padding: 0.2rem 0;
    border-bottom: 1px solid var(--border);
  }
  .history .title {
    flex: 1 1 auto;
    overflow: hidden;
    text-overflow: ellipsis;
    white-space: nowrap;
  }
  .muted {
    color: var(--muted);
  }
  .sr-only {
    position: absolute;
    width: 1px;
    height: 1px;
    padding: 0;
    margin: -1px;
    overflow: hidden;
    clip: rect(0, 0, 0, 0);
    white-space: nowrap;
    border: 0;
  }
  .cursor::after {
    content: "▍";
    animation: blink 1s steps(2, start) infinite;
  }
  @keyframes blink {
    to {
      visibility: hidden;
    }
  }
  @media (prefers-reduced-motion: reduce) {
    .log {
      scroll-behavior: auto;
    }
    .cursor::after {
      animation: none;
    }
    * {
      transition: none !important;
      animation: none !important;
    }
  }
`;

/** In cascade order: the answers' rules sit between the layout's and the rest's. */
export const styles = [layout, answerStyles, after];
