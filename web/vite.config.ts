// Builds web/dist exactly as the gateway contract lays it out:
//   dist/index.html            the full-page chat (copied from public/, no inline script/style)
//   dist/widget/widget.js      the tiny, stable-named loader (defines <tiergate-chat>)
//   dist/widget/*-[hash].js    the lazily imported chat chunk(s)
// The loader is the only entry; everything else is reached through its dynamic import,
// so the page's first paint never waits for Lit, marked or DOMPurify.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  publicDir: "public",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // The preload helper would add code (and a <link> injection) to the loader; the chat
    // chunk is one request anyway, resolved against import.meta.url by the browser.
    modulePreload: false,
    cssCodeSplit: false,
    sourcemap: false,
    reportCompressedSize: true,
    rollupOptions: {
      input: { widget: "src/widget.ts" },
      output: {
        entryFileNames: "widget/[name].js",
        chunkFileNames: "widget/[name]-[hash].js",
        assetFileNames: "widget/[name]-[hash][extname]",
      },
    },
  },
});
