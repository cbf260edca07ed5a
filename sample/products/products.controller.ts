import { Body, Controller, Get, Param, Patch } from '@nestjs/common';
import { Cacheable } from '../../lib/index.js';
import { UpdateProductDto } from './dto/update-product.dto.js';
import type { Product } from './product.js';
import { PRODUCT_LIST_KEY, ProductsService } from './products.service.js';

@Controller('products')
export class ProductsController {
  constructor(private readonly products: ProductsService) {}

  /** The whole list, cached for 30 s right on the route. */
  @Get()
  @Cacheable({ key: PRODUCT_LIST_KEY, ttl: 30 })
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

  @Patch(':id')
  update(@Param('id') id: string, @Body() dto: UpdateProductDto): Promise<Product> {
    return this.products.update(id, dto);
  }
}
