import 'reflect-metadata';
import { ValidationPipe, type INestApplication, type NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';

/**
 * Creates the sample application (not listening yet): the product catalogue with a global
 * ValidationPipe. Configuration comes from the environment: `MEMCACHED_SERVERS`,
 * `COUNTERS_MEMCACHED_SERVERS`, `SAMPLE_REPOSITORY_DELAY_MS`.
 */
export async function createApp(options: NestApplicationOptions = {}): Promise<INestApplication> {
  const app = await NestFactory.create(AppModule, { abortOnError: false, ...options });
  app.useGlobalPipes(
    new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }),
  );
  return app;
}
