import { Injectable, Logger, NotFoundException } from '@nestjs/common';
import { CacheEvict, Cacheable, InjectMemcached, MemcachedService } from '../../lib/index.js';
import type { UpdateProductDto } from './dto/update-product.dto.js';
import type { Product } from './product.js';
import { ProductsRepository } from './products.repository.js';

/** Cache key of one product (used by @Cacheable and @CacheEvict). */
export const productKey = (id: string): string => `product:${id}`;
/** Cache key of the product list (cached on the GET /products route). */
export const PRODUCT_LIST_KEY = 'products:all';
/**
 * Tag of every cached value that lists products: an update invalidates it, so every such value
 * becomes a miss in every instance of the app, without knowing their keys.
 */
export const PRODUCTS_TAG = 'products';

@Injectable()
export class ProductsService {
  private readonly logger = new Logger(ProductsService.name);

  constructor(
    private readonly repository: ProductsRepository,
    @InjectMemcached('counters') private readonly counters: MemcachedService,
  ) {}

  findAll(): Promise<Product[]> {
    return this.repository.findAll();
  }

  /** Cached for 60 s under `product:<id>`; concurrent misses of one id hit the repository once. */
  @Cacheable({ key: productKey, ttl: 60 })
  async findOne(id: string): Promise<Product> {
    const product = await this.repository.findOne(id);
    if (product === undefined) throw new NotFoundException(`no product ${id}`);
    return product;
  }

  /**
   * Once the update succeeded: deletes the product's entry, and invalidates the `products` tag
   * (the list, and any other value cached under it).
   */
  @CacheEvict({ key: productKey, tags: [PRODUCTS_TAG] })
  async update(id: string, dto: UpdateProductDto): Promise<Product> {
    // Only the fields that were sent (the validated DTO has the others as undefined).
    const patch = Object.fromEntries(Object.entries(dto).filter(([, v]) => v !== undefined));
    const product = await this.repository.update(id, patch);
    if (product === undefined) throw new NotFoundException(`no product ${id}`);
    return product;
  }

  /** Counts a view on the `counters` client; `undefined` when memcached is unavailable. */
  async recordView(id: string): Promise<number | undefined> {
    const key = `views:${id}`;
    try {
      const n = await this.counters.incr(key);
      if (n !== undefined) return n;
      if (await this.counters.add(key, 1)) return 1;
      return await this.counters.incr(key);
    } catch (error) {
      this.logger.warn(`could not count a view of ${id}: ${String(error)}`);
      return undefined;
    }
  }
}
