import { Module } from '@nestjs/common';
import { CacheModule } from '@nestjs/cache-manager';
import Keyv from 'keyv';
import { MemcachedService } from '../../lib/index.js';
import { KeyvMemcached } from '../../lib/keyv/index.js';
import { ProductMessagesController } from './product-messages.controller.js';
import { ProductPagesService } from './product-pages.service.js';
import { ProductsController } from './products.controller.js';
import { ProductsRepository } from './products.repository.js';
import { ProductsService } from './products.service.js';
import { StockController } from './stock.controller.js';

@Module({
  imports: [
    // CACHE_MANAGER (for CacheInterceptor) on the default memcached client: one client, one
    // shutdown. Its keys live in the Keyv namespace "http": CACHE_MANAGER.clear() empties that
    // namespace and leaves the @Cacheable keys alone.
    CacheModule.registerAsync({
      inject: [MemcachedService],
      useFactory: (memcached: MemcachedService) => ({
        stores: [new Keyv({ store: new KeyvMemcached(memcached), namespace: 'http' })],
      }),
    }),
  ],
  controllers: [ProductsController, StockController, ProductMessagesController],
  providers: [ProductsRepository, ProductsService, ProductPagesService],
})
export class ProductsModule {}
