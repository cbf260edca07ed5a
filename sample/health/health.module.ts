import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { MemcachedHealthModule } from '../../lib/health/index.js';
import { HealthController } from './health.controller.js';

@Module({
  imports: [TerminusModule, MemcachedHealthModule],
  controllers: [HealthController],
})
export class HealthModule {}
