import 'reflect-metadata';
import { ValidationPipe, type INestApplication, type NestApplicationOptions } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { AppModule } from './app.module.js';

/**
 * Creates the sample application (not listening yet): the product catalogue with a global
 * ValidationPipe. Configuration comes from the environment: `MEMCACHED_SERVERS`,
 * `COUNTERS_MEMCACHED_SERVERS`, `SAMPLE_REPOSITORY_DELAY_MS`, and `SAMPLE_TCP_PORT`: when set, the
 * app also serves the catalogue as a TCP microservice on that port (`product.price`), started by
 * `app.startAllMicroservices()`.
 */
export async function createApp(options: NestApplicationOptions = {}): Promise<INestApplication> {
  const app = await NestFactory.create(AppModule, { abortOnError: false, ...options });
  app.useGlobalPipes(
    new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true }),
  );
  const tcpPort = process.env['SAMPLE_TCP_PORT'];
  if (tcpPort !== undefined && tcpPort !== '') {
    app.connectMicroservice<MicroserviceOptions>(
      { transport: Transport.TCP, options: { host: '127.0.0.1', port: Number(tcpPort) } },
      { inheritAppConfig: true },
    );
  }
  return app;
}
