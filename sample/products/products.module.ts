import { Module } from '@nestjs/common';
import { ProductPagesService } from './product-pages.service.js';
import { ProductsController } from './products.controller.js';
import { ProductsRepository } from './products.repository.js';
import { ProductsService } from './products.service.js';

@Module({
  controllers: [ProductsController],
  providers: [ProductsRepository, ProductsService, ProductPagesService],
})
export class ProductsModule {}
