import { Body, Controller, Get, Param, Patch } from '@nestjs/common';
import { Cacheable } from '../../lib/index.js';
import { UpdateProductDto } from './dto/update-product.dto.js';
import { ProductPagesService, type ProductPage } from './product-pages.service.js';
import type { Product } from './product.js';
import { PRODUCT_LIST_KEY, PRODUCTS_TAG, ProductsService } from './products.service.js';

@Controller('products')
export class ProductsController {
  constructor(
    private readonly products: ProductsService,
    private readonly pages: ProductPagesService,
  ) {}

  /**
   * The whole list, cached for 30 s right on the route, under the `products` tag: an update of
   * any product (PATCH below) invalidates it in every instance of the app.
   */
  @Get()
  @Cacheable({ key: PRODUCT_LIST_KEY, ttl: 30, tags: [PRODUCTS_TAG] })
  findAll(): Promise<Product[]> {
    return this.products.findAll();
  }

  /** One product (cached in the service) and its view count (a named client). */
  @Get(':id')
  async findOne(@Param('id') id: string): Promise<Product & { views?: number }> {
    const product = await this.products.findOne(id);
    const views = await this.products.recordView(id);
    return views === undefined ? product : { ...product, views };
  }

  /**
   * The rendered product page: a lease makes one render on a miss (across every instance of the
   * app), stale-while-revalidate serves the old page at once while one request re-renders it.
   */
  @Get(':id/page')
  page(@Param('id') id: string): Promise<ProductPage> {
    return this.pages.render(id);
  }

  /**
   * Updates the product: `ProductsService.update` deletes its entry and invalidates the
   * `products` tag (so the list above); its page is marked stale.
   */
  @Patch(':id')
  async update(@Param('id') id: string, @Body() dto: UpdateProductDto): Promise<Product> {
    const product = await this.products.update(id, dto);
    await this.pages.changed(id);
    return product;
  }
}
