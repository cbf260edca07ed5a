import { Controller, Get, UseInterceptors } from '@nestjs/common';
import { CacheInterceptor, CacheTTL } from '@nestjs/cache-manager';
import { ProductsRepository } from './products.repository.js';

/**
 * Stock levels, cached the @nestjs/cache-manager way: `CacheInterceptor` keys the response by
 * URL and stores it through `CACHE_MANAGER`, whose store is a `KeyvMemcached` on the default
 * memcached client (see products.module.ts).
 */
@Controller('stock')
@UseInterceptors(CacheInterceptor)
export class StockController {
  constructor(private readonly repository: ProductsRepository) {}

  /** `{ [id]: stock }`; cached for 10 s (Keyv TTLs are milliseconds). */
  @Get()
  @CacheTTL(10_000)
  levels(): Promise<Record<string, number>> {
    return this.repository.stockLevels();
  }
}
