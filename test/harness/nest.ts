import type { LoggerService } from '@nestjs/common';

/** Collects the warnings and errors logged through Nest's Logger (the rest is dropped). */
export class CaptureLogger implements LoggerService {
  readonly messages: string[] = [];
  log(): void {}
  debug(): void {}
  verbose(): void {}
  warn(message: unknown): void {
    this.messages.push(String(message));
  }
  error(message: unknown): void {
    this.messages.push(String(message));
  }
  fatal(message: unknown): void {
    this.messages.push(String(message));
  }
}
