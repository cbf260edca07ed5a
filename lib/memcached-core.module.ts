import { Module, type NestModule } from '@nestjs/common';
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
export class MemcachedCoreModule implements NestModule {
  constructor(private readonly explorer: MemcachedExplorer) {}

  /**
   * Nest calls this (middleware configuration) in HTTP applications after every instance was
   * created and before the routes are registered: the last moment at which wrapping a
   * controller method still changes what the route calls.
   */
  configure(): void {
    this.explorer.explore();
  }
}
