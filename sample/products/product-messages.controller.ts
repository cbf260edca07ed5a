import { Controller, NotFoundException } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { Cacheable } from '../../lib/index.js';
import { ProductsRepository } from './products.repository.js';
import { PRODUCTS_TAG } from './products.service.js';

/** What `product.price` answers. */
export interface ProductPrice {
  id: string;
  price: number;
}

/**
 * The catalogue over a TCP microservice (started when `SAMPLE_TCP_PORT` is set): the handler
 * itself is cached, under the `products` tag, so a PATCH over HTTP invalidates it too.
 */
@Controller()
export class ProductMessagesController {
  constructor(private readonly repository: ProductsRepository) {}

  @MessagePattern('product.price')
  @Cacheable({ key: (id: string) => `price:${id}`, ttl: 60, tags: [PRODUCTS_TAG] })
  async price(@Payload() id: string): Promise<ProductPrice> {
    const product = await this.repository.findOne(id);
    if (product === undefined) throw new NotFoundException(`no product ${id}`);
    return { id, price: product.price };
  }
}
