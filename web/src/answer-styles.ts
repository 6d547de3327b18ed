// The conversation's styles: turns, Markdown bodies, code blocks, citations, the source list
// and the feedback controls (see styles.ts, which puts them in the chat's cascade).
import { css } from "lit";

export const answerStyles = css`
  .log {
    flex: 1 1 auto;
    min-height: 6rem;
    overflow-y: auto;
    padding: 0.75rem;
    margin: 0;
    list-style: none;
    scroll-behavior: smooth;
  }
  .turn {
    margin: 0 0 0.9rem;
    max-width: 100%;
  }
  .turn .who {
    font-size: 0.8rem;
    color: var(--muted);
    display: flex;
    gap: 0.5rem;
    flex-wrap: wrap;
  }
  .turn.user .body {
    background: var(--user-bg);
    border-radius: 10px;
    padding: 0.4rem 0.7rem;
    white-space: pre-wrap;
    overflow-wrap: anywhere;
  }
  .turn.assistant .body {
    overflow-wrap: anywhere;
  }
  .body > :first-child {
    margin-top: 0.2rem;
  }
  .body > :last-child {
    margin-bottom: 0.2rem;
  }
  .body a {
    color: var(--accent);
  }
  .body code {
    font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
    font-size: 0.9em;
    background: var(--panel);
    padding: 0 0.2em;
    border-radius: 3px;
  }
  .code {
    position: relative;
  }
  .code pre {
    background: var(--panel);
    border: 1px solid var(--border);
    border-radius: 6px;
    padding: 0.6rem;
    padding-top: 2.2rem;
    overflow-x: auto;
  }
  .code .copy {
    position: absolute;
    top: 0.3rem;
    right: 0.3rem;
    font-size: 0.8rem;
    min-height: 1.6rem;
    padding: 0 0.5rem;
  }
  .cite {
    min-height: 0;
    padding: 0 0.15rem;
    border: 0;
    background: none;
    color: var(--accent);
    text-decoration: underline;
    font-size: 0.85em;
    vertical-align: super;
    line-height: 1;
  }
  .tag {
    font-size: 0.8rem;
    padding: 0 0.4rem;
    border-radius: 4px;
    background: var(--warn-bg);
    color: var(--warn-fg);
  }
  .note {
    font-size: 0.85rem;
    color: var(--muted);
    font-style: italic;
    margin: 0.2rem 0;
  }
  .sources {
    font-size: 0.85rem;
    margin: 0.3rem 0;
    padding: 0.4rem 0.6rem;
    border-left: 3px solid var(--border);
  }
  .sources h3 {
    font-size: 0.85rem;
    margin: 0 0 0.2rem;
  }
  .sources ol {
    margin: 0;
    padding-left: 1.4rem;
  }
  .sources li:focus {
    background: var(--user-bg);
  }
  .sources .path,
  .sources .doc {
    color: var(--muted);
  }
  .feedback {
    display: flex;
    flex-wrap: wrap;
    align-items: center;
    gap: 0.3rem;
    font-size: 0.85rem;
  }
  .feedback button {
    min-height: 1.8rem;
    padding: 0.1rem 0.5rem;
  }
  .icon {
    width: 1rem;
    height: 1rem;
    fill: currentColor;
    vertical-align: middle;
  }
  .icon.flip {
    transform: rotate(180deg);
  }
  details.flag {
    position: relative;
  }
  details.flag summary {
    cursor: pointer;
    padding: 0.1rem 0.5rem;
    border: 1px solid var(--border);
    border-radius: 6px;
    list-style: none;
  }
  details.flag summary::-webkit-details-marker {
    display: none;
  }
  details.flag .menu {
    display: flex;
    gap: 0.3rem;
    flex-wrap: wrap;
    padding-top: 0.3rem;
  }
`;
