// The CPU-first upgrade, seen from the page: while the large model wakes (an answer came with
// `x-tiergate-upgrade: waking`, or a 503 `model_waking`), poll `GET /v1/status` until the
// model waited for is ready, at a pace taken from its `eta_s`, then say so once.
import type { Status } from "./api";

export class StatusPoller {
  private timer: number | undefined;

  constructor(
    private readonly status: () => Promise<Status>,
    private readonly onStatus: (s: Status) => void,
    private readonly onReady: () => void,
  ) {}

  /** Polls until `wanted` (or what `answeredBy` stands in for) is ready; replaces any poll. */
  start(wanted: string, answeredBy: string | undefined): void {
    this.stop();
    const once = async () => {
      let delay = 5;
      try {
        const s = await this.status();
        this.onStatus(s);
        // What we wait for: the model asked for (a routed `tiergate` reads the state of the
        // model it stands for, `routes_to`), else — not listed for this visitor — any model
        // the answering one stands in for (`answered_by`).
        const target =
          s.data.find((d) => d.id === wanted) ??
          s.data.find((d) => d.state !== "ready" && d.id !== answeredBy && (!answeredBy || d.answered_by === answeredBy));
        if (!target || target.state === "ready") {
          this.onReady();
          return;
        }
        if (target.eta_s) delay = Math.min(15, Math.max(2, target.eta_s / 2));
      } catch {
        delay = 10;
      }
      this.timer = window.setTimeout(once, delay * 1000);
    };
    this.timer = window.setTimeout(once, 2000);
  }

  stop(): void {
    window.clearTimeout(this.timer);
  }
}
