import type { INestApplicationContext, LoggerService, ModuleMetadata } from '@nestjs/common';
import { Test } from '@nestjs/testing';

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

/**
 * Boots testing modules (with `logger`, else Nest's own) and closes every one booted so far with
 * `closeAll` (in afterEach).
 */
export class TestApps {
  private readonly open: INestApplicationContext[] = [];

  readonly boot = async (
    metadata: ModuleMetadata,
    logger?: LoggerService,
  ): Promise<INestApplicationContext> => {
    const builder = Test.createTestingModule(metadata);
    const moduleRef = await (logger === undefined ? builder : builder.setLogger(logger)).compile();
    this.open.push(moduleRef);
    await moduleRef.init();
    return moduleRef;
  };

  /** The error booting `metadata` fails with; throws when it boots. */
  readonly bootError = async (metadata: ModuleMetadata, logger?: LoggerService): Promise<Error> => {
    try {
      await this.boot(metadata, logger);
    } catch (error) {
      return error as Error;
    }
    throw new Error('expected the application to fail to boot');
  };

  closeAll(): Promise<void> {
    return Promise.all(this.open.splice(0).map((app) => app.close())).then(() => undefined);
  }
}
