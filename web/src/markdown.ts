// Model output → safe DOM. Two independent guards, so one mistake cannot let HTML through:
// marked escapes every raw HTML token (block and inline) and renders images as their alt
// text (an image URL would be a third-party request), then DOMPurify keeps only a short list
// of formatting tags and attributes. Links open in a new tab with rel="noopener noreferrer";
// `[n]` citations become buttons that point at the answer's source list; code blocks get a
// copy button.
import DOMPurify from "dompurify";
import { Marked } from "marked";

const ESC: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ESC[c]!);

const marked = new Marked({
  gfm: true,
  breaks: false,
  async: false,
  renderer: {
    html({ text, block }) {
      return block ? `<p>${escapeHtml(text)}</p>` : escapeHtml(text);
    },
    image({ text }) {
      return escapeHtml(text);
    },
    checkbox() {
      return "";
    },
  },
});

const purify = DOMPurify(window);
// Passed on every call: after setConfig() DOMPurify would ignore per-call options.
const CONFIG = {
  ALLOWED_TAGS: [
    "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "a", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
    "span",
  ],
  ALLOWED_ATTR: ["href", "title", "class", "start", "align"],
  ALLOW_DATA_ATTR: false,
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  RETURN_DOM_FRAGMENT: true as const,
};
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    if (!node.getAttribute("href")) node.removeAttribute("href");
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
  if (node.hasAttribute("class") && !/^language-[\w+-]+$/.test(node.getAttribute("class") ?? "")) {
    node.removeAttribute("class");
  }
});

export interface RenderLabels {
  copyCode: string;
  source: (n: number) => string;
}

/** Renders one answer; `sources` are the citation numbers that exist under this answer. */
export function renderMarkdown(text: string, sources: ReadonlySet<number>, labels: RenderLabels): DocumentFragment {
  const html = marked.parse(text) as string;
  const frag = purify.sanitize(html, CONFIG);
  if (sources.size) linkCitations(frag, sources, labels);
  for (const pre of Array.from(frag.querySelectorAll("pre"))) {
    const wrap = document.createElement("div");
    wrap.className = "code";
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "copy";
    btn.dataset.testid = "copy-code";
    btn.textContent = labels.copyCode;
    pre.replaceWith(wrap);
    wrap.append(btn, pre);
  }
  return frag;
}

/** `[n]` in text (never inside code) → a button that the chat wires to source n. */
function linkCitations(root: DocumentFragment, sources: ReadonlySet<number>, labels: RenderLabels): void {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const hits: Text[] = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!(n.parentElement?.closest("code, pre, a")) && /\[\d+\]/.test(n.nodeValue ?? "")) hits.push(n as Text);
  }
  for (const node of hits) {
    const parts = (node.nodeValue ?? "").split(/(\[\d+\])/);
    const out = document.createDocumentFragment();
    for (const part of parts) {
      const m = /^\[(\d+)\]$/.exec(part);
      const n = m ? Number(m[1]) : NaN;
      if (m && sources.has(n)) {
        const a = document.createElement("button");
        a.type = "button";
        a.className = "cite";
        a.dataset.cite = String(n);
        a.dataset.testid = "citation";
        a.setAttribute("aria-label", labels.source(n));
        a.textContent = `[${n}]`;
        out.append(a);
      } else if (part) {
        out.append(part);
      }
    }
    node.replaceWith(out);
  }
}

/** The answer as plain text, for the screen-reader announcement. */
export function plainText(frag: DocumentFragment): string {
  return (frag.textContent ?? "").replace(/\s+/g, " ").trim();
}
