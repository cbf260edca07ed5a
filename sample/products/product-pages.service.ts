import { Injectable, Logger, NotFoundException } from '@nestjs/common';
import { Cacheable, InjectMemcached, MemcachedService } from '../../lib/index.js';
import type { Product } from './product.js';
import { ProductsRepository } from './products.repository.js';

/** A rendered product page. */
export interface ProductPage {
  id: string;
  title: string;
  price: number;
  html: string;
  renderedAt: string;
}

/** Cache key of a product page (on the `pages` client). */
export const pageKey = (id: string): string => `page:${id}`;

/**
 * Product pages: an expensive render, cached on the `pages` client, which speaks memcached's
 * meta protocol. That buys two things the plain cache cannot do across several instances of
 * the app:
 *
 * - `lease`: when a page is missing, one render runs across every instance; the other requests
 *   wait for it (up to 3 s) instead of all rendering at once;
 * - `staleWhileRevalidate`: for 5 minutes after its 60 s TTL, and after an update marked it
 *   stale, the old page is served at once while one request re-renders it in the background.
 */
@Injectable()
export class ProductPagesService {
  private readonly logger = new Logger(ProductPagesService.name);
  /** Renders since start (to show the cache at work). */
  renders = 0;

  constructor(
    private readonly repository: ProductsRepository,
    @InjectMemcached('pages') private readonly pages: MemcachedService,
  ) {}

  @Cacheable({
    client: 'pages',
    key: pageKey,
    ttl: 60,
    staleWhileRevalidate: 300,
    lease: { ttl: 10, wait: 3000 },
  })
  async render(id: string): Promise<ProductPage> {
    this.renders++;
    const product = await this.repository.findOne(id);
    if (product === undefined) throw new NotFoundException(`no product ${id}`);
    return {
      id,
      title: product.name,
      price: product.price,
      html: this.html(product),
      renderedAt: new Date().toISOString(),
    };
  }

  /**
   * Marks the page of `id` stale after an update: readers keep getting the old page at once
   * while one of them renders the new one. A cache failure never fails the update.
   */
  async changed(id: string): Promise<void> {
    try {
      await this.pages.invalidate(pageKey(id));
    } catch (error) {
      this.logger.warn(`could not mark the page of ${id} stale: ${String(error)}`);
    }
  }

  private html(product: Product): string {
    const price = product.price.toFixed(2);
    return `<article><h1>${product.name}</h1><p>€${price} — ${product.stock} in stock</p></article>`;
  }
}
