const now = (): number => performance.now();

/**
 * One timer for every deadline of a connection, set to the earliest. When it fires, the check
 * runs only after the event loop has read whatever I/O is ready (`setImmediate` comes after the
 * poll phase): a reply that has arrived wins over a deadline checked late. A timer that fires
 * much later than asked means this process was stalled, which the check is told.
 */
export class DeadlineTimer {
  private timer: NodeJS.Timeout | undefined;
  private at = Infinity;
  private immediate: NodeJS.Immediate | undefined;
  private lateBy = 0;

  constructor(
    /** Called with the current time and how late the timer fired (ms). */
    private readonly check: (now: number, lateBy: number) => void,
  ) {}

  /** Makes sure the check runs by `deadline` (performance clock, ms). */
  arm(deadline: number): void {
    if (deadline >= this.at) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.at = deadline;
    this.timer = setTimeout(this.fire, Math.max(0, deadline - now()) + 1);
  }

  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    this.at = Infinity;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.lateBy = Math.max(0, now() - this.at);
    this.at = Infinity;
    this.immediate ??= setImmediate(this.afterIo);
  };

  private readonly afterIo = (): void => {
    this.immediate = undefined;
    const lateBy = this.lateBy;
    this.lateBy = 0;
    this.check(now(), lateBy);
  };
}
