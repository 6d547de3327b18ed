// The loader: the only script a page links. It must stay tiny and never block first paint,
// so it only defines <tiergate-chat>, reserves its space and draws the launcher; the real
// chat (Lit, marked, DOMPurify) is a separate chunk imported on demand from this file's own
// directory (the browser resolves the dynamic import against import.meta.url).

type Mode = "page" | "bubble";

/** What the chat chunk exports; kept structural so the loader imports no types at runtime. */
export interface ChatApp extends HTMLElement {
  api: string;
  model: string;
  lang: string;
  mode: Mode;
  open: boolean;
}

const LABELS: Record<string, { open: string; loading: string }> = {
  en: { open: "Open the chat", loading: "Loading the chat…" },
  fr: { open: "Ouvrir la discussion", loading: "Chargement de la discussion…" },
};

/** The widget's language: its own `lang`, else the closest `lang` above it, else the browser's. */
export function pickLang(el: Element): "en" | "fr" {
  const own = el.closest("[lang]")?.getAttribute("lang") || navigator.language || "en";
  return own.toLowerCase().startsWith("fr") ? "fr" : "en";
}

// Constructed stylesheets are not subject to the page's style-src CSP (no <style>, no style="").
const sheet = new CSSStyleSheet();
sheet.replaceSync(`
:host{display:block;box-sizing:border-box;color-scheme:light dark}
:host([mode="page"]){height:100%;min-height:20rem}
:host([hidden]){display:none}
.placeholder{height:100%;display:flex;align-items:center;justify-content:center;font:1rem system-ui,sans-serif;color:CanvasText}
.launcher{position:fixed;right:1.25rem;bottom:1.25rem;z-index:2147483000;width:3.5rem;height:3.5rem;border-radius:50%;
 border:0;background:#0b57d0;color:#fff;cursor:pointer;box-shadow:0 2px 8px rgba(0,0,0,.3);display:grid;place-items:center}
.launcher:focus-visible{outline:3px solid #ffbf47;outline-offset:3px}
.launcher svg{width:1.6rem;height:1.6rem;fill:currentColor}
@media (prefers-color-scheme:dark){.launcher{background:#8ab4f8;color:#0b1b33}}
`);

const CHAT_ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';

let chunk: Promise<typeof import("./app")> | undefined;
/** One import for every element on the page; the browser caches the module anyway. */
function loadChat(): Promise<typeof import("./app")> {
  chunk ??= import("./app");
  return chunk;
}

class TiergateChat extends HTMLElement {
  static observedAttributes = ["api", "model", "lang", "mode"];
  private app: ChatApp | undefined;
  private launcher: HTMLButtonElement | undefined;

  constructor() {
    super();
    this.attachShadow({ mode: "open" }).adoptedStyleSheets = [sheet];
  }

  get mode(): Mode {
    return this.getAttribute("mode") === "page" ? "page" : "bubble";
  }

  /** The gateway: the `api` attribute, else the origin this script was served from. */
  get api(): string {
    const attr = this.getAttribute("api");
    return (attr || new URL(import.meta.url).origin).replace(/\/+$/, "");
  }

  connectedCallback(): void {
    if (this.app || this.launcher || this.shadowRoot!.childElementCount) return;
    const lang = pickLang(this);
    if (this.mode === "page") {
      const ph = document.createElement("div");
      ph.className = "placeholder";
      ph.setAttribute("role", "status");
      ph.textContent = LABELS[lang]!.loading;
      this.shadowRoot!.append(ph);
      void this.mount(true).then(() => ph.remove());
    } else {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "launcher";
      b.dataset.testid = "launcher";
      b.setAttribute("aria-label", LABELS[lang]!.open);
      b.setAttribute("aria-expanded", "false");
      b.innerHTML = CHAT_ICON;
      // Warm the chunk on intent, open on click.
      b.addEventListener("pointerenter", () => void loadChat(), { once: true });
      b.addEventListener("focus", () => void loadChat(), { once: true });
      b.addEventListener("click", () => void this.toggle());
      this.launcher = b;
      this.shadowRoot!.append(b);
    }
  }

  attributeChangedCallback(): void {
    if (this.app) this.sync(this.app);
  }

  private sync(app: ChatApp): void {
    app.api = this.api;
    app.model = this.getAttribute("model") ?? "";
    app.lang = pickLang(this);
    app.mode = this.mode;
  }

  private async mount(open: boolean): Promise<ChatApp> {
    if (!this.app) {
      await loadChat();
      const app = document.createElement("tiergate-chat-app") as ChatApp;
      this.sync(app);
      app.open = open;
      app.addEventListener("tiergate-close", () => {
        app.open = false;
        this.launcher?.setAttribute("aria-expanded", "false");
        this.launcher?.focus();
      });
      this.app = app;
      this.shadowRoot!.append(app);
    }
    return this.app;
  }

  private async toggle(): Promise<void> {
    const open = !(this.app?.open ?? false);
    const app = await this.mount(open);
    app.open = open;
    this.launcher?.setAttribute("aria-expanded", String(open));
  }
}

if (!customElements.get("tiergate-chat")) customElements.define("tiergate-chat", TiergateChat);
