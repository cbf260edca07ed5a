import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { MemcachedExplorer } from './memcached.explorer.js';

/**
 * Imported by every `MemcachedModule` registration; holds the one explorer of the application.
 * @internal
 */
@Module({
  imports: [DiscoveryModule],
  providers: [MemcachedExplorer],
})
export class MemcachedCoreModule {}
