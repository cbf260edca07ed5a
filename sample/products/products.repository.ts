import { Injectable } from '@nestjs/common';
import { ConfigService } from '@nestjs/config';
import type { Product } from './product.js';

const SEED: ReadonlyArray<Omit<Product, 'updatedAt'>> = [
  { id: '1', name: 'Espresso machine', price: 249, stock: 12 },
  { id: '2', name: 'Burr grinder', price: 129.5, stock: 30 },
  { id: '3', name: 'Milk jug', price: 14.9, stock: 80 },
];

/**
 * An in-memory product store that is deliberately slow (`SAMPLE_REPOSITORY_DELAY_MS`, default
 * 500 ms per call), standing in for a database; it counts its calls so the cache's effect shows.
 */
@Injectable()
export class ProductsRepository {
  /** Calls per method, since start. */
  readonly calls = { findAll: 0, findOne: 0, update: 0, stockLevels: 0 };
  private readonly delayMs: number;
  private readonly products = new Map<string, Product>(
    SEED.map((p) => [p.id, { ...p, updatedAt: new Date(0).toISOString() }]),
  );

  constructor(config: ConfigService) {
    this.delayMs = Number(config.get<string>('SAMPLE_REPOSITORY_DELAY_MS') ?? 500);
  }

  async findAll(): Promise<Product[]> {
    this.calls.findAll++;
    await this.slow();
    return [...this.products.values()].map((p) => ({ ...p }));
  }

  async findOne(id: string): Promise<Product | undefined> {
    this.calls.findOne++;
    await this.slow();
    const product = this.products.get(id);
    return product && { ...product };
  }

  async update(id: string, patch: Partial<Omit<Product, 'id'>>): Promise<Product | undefined> {
    this.calls.update++;
    await this.slow();
    const product = this.products.get(id);
    if (product === undefined) return undefined;
    const updated = { ...product, ...patch, id, updatedAt: new Date().toISOString() };
    this.products.set(id, updated);
    return { ...updated };
  }

  async stockLevels(): Promise<Record<string, number>> {
    this.calls.stockLevels++;
    await this.slow();
    return Object.fromEntries([...this.products.values()].map((p) => [p.id, p.stock]));
  }

  private slow(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, this.delayMs));
  }
}
