/**
 * Compile-time checks of @Cacheable / @CacheEvict (compiled by `npm run typecheck`, never run):
 * the option functions must take the method's arguments and `unless` its awaited result. Each
 * `@ts-expect-error` line must stay an error; the other decorations must compile.
 */
import { applyDecorators, Controller, Get, Injectable } from '@nestjs/common';
import { CacheEvict, Cacheable } from '../../lib/index.js';

interface Product {
  id: string;
  name: string;
}

interface UpdateProductDto {
  name: string;
}

// The README example.
@Injectable()
export class ProductsService {
  @Cacheable({ key: (id: string) => `product:${id}`, ttl: 60 })
  async findOne(id: string): Promise<Product> {
    return { id, name: 'tea' };
  }

  @CacheEvict({ keys: (id: string) => [`product:${id}`, 'products:all'] })
  async update(id: string, dto: UpdateProductDto): Promise<Product> {
    return { id, name: dto.name };
  }
}

@Controller('products')
export class ProductsController {
  @Get()
  @Cacheable({ key: 'products:all', ttl: 30 })
  findAll(): Promise<Product[]> {
    return Promise.resolve([]);
  }
}

export class Positive {
  @Cacheable()
  async noOptions(id: string): Promise<number> {
    return id.length;
  }

  @Cacheable({ key: 'constant', ttl: 5 })
  sync(): number {
    return 1;
  }

  // A function may take fewer parameters than the method.
  @Cacheable({ key: (id: string) => id })
  async fewer(id: string, page: number): Promise<number> {
    return id.length + page;
  }

  @Cacheable({
    key: (id: string, page: number) => `${id}:${page}`,
    condition: (id: string) => id !== '',
    unless: (result: { keep: boolean }) => !result.keep,
  })
  async all(id: string, page: number): Promise<{ keep: boolean; page: number }> {
    return { keep: id !== '', page };
  }

  @Cacheable({ unless: (result) => result === 0 })
  async untypedUnless(id: string): Promise<number> {
    return id.length;
  }

  @Cacheable({ key: (...args: unknown[]) => JSON.stringify(args) })
  async rest(id: string, flag: boolean): Promise<string> {
    return `${id}${flag}`;
  }

  @CacheEvict({ key: (id: string) => `product:${id}`, beforeInvocation: true })
  @Cacheable({ key: (id: string) => `product:${id}` })
  async both(id: string): Promise<string> {
    return id;
  }

  @CacheEvict({ keys: ['a', 'b'] })
  async constantKeys(): Promise<void> {}

  @Cacheable({ key: (id: string) => `product:${id}`, tags: (id: string) => ['products', id] })
  async tagged(id: string): Promise<string> {
    return id;
  }

  @Cacheable({ key: 'products:all', tags: ['products'] })
  async constantTags(): Promise<string[]> {
    return [];
  }

  // Only tags: allowed.
  @CacheEvict({ tags: (id: string) => ['products', `product:${id}`] })
  async onlyTags(id: string): Promise<void> {
    void id;
  }

  @CacheEvict({ key: (id: string) => `product:${id}`, tags: ['products'] })
  async keyAndTags(id: string): Promise<void> {
    void id;
  }
}

export class Negative {
  // @ts-expect-error the key function takes a number, the method a string
  @Cacheable({ key: (id: number) => `product:${id}` })
  async wrongArgType(id: string): Promise<string> {
    return id;
  }

  // @ts-expect-error the key function needs two arguments, the method gets one
  @Cacheable({ key: (id: string, page: number) => `${id}:${page}` })
  async tooManyParameters(id: string): Promise<string> {
    return id;
  }

  // @ts-expect-error condition takes a number
  @Cacheable({ key: 'k', condition: (n: number) => n > 0 })
  async wrongCondition(id: string): Promise<string> {
    return id;
  }

  // @ts-expect-error unless expects an object result, the method resolves to a number
  @Cacheable({ unless: (result: { keep: boolean }) => !result.keep })
  async wrongResult(id: string): Promise<number> {
    return id.length;
  }

  // @ts-expect-error the keys function takes a number
  @CacheEvict({ keys: (id: number) => [`product:${id}`] })
  async wrongEvictArgs(id: string): Promise<void> {
    void id;
  }

  // @ts-expect-error key must return a string
  @Cacheable({ key: (id: string) => id.length })
  async keyNotString(id: string): Promise<string> {
    return id;
  }

  // @ts-expect-error key and keys together
  @CacheEvict({ key: 'a', keys: ['b'] })
  async keyAndKeys(): Promise<void> {}

  // @ts-expect-error the tags function takes a number
  @Cacheable({ key: 'k', tags: (id: number) => [`t${id}`] })
  async wrongTagsArgs(id: string): Promise<string> {
    return id;
  }

  // @ts-expect-error tags is a list, not one string
  @CacheEvict({ tags: 'products' })
  async tagsNotAList(): Promise<void> {}

  // @ts-expect-error nothing to evict
  @CacheEvict({ beforeInvocation: true })
  async nothing(): Promise<void> {}
}

export class NotAMethod {
  // @ts-expect-error the decorators go on methods
  @Cacheable()
  value = 1;
}

// Without typed functions a decorator is a plain MethodDecorator (applyDecorators takes it).
export const CachedGet = (path: string): MethodDecorator =>
  applyDecorators(
    Get(path),
    Cacheable({ key: 'all', ttl: 5, tags: ['t'] }),
    CacheEvict({ keys: ['x'] }),
    CacheEvict({ tags: ['t'] }),
  );
export const plain: MethodDecorator = Cacheable({ key: (...args: unknown[]) => String(args[0]) });
// With typed functions it only goes on matching methods; a cast is the explicit way out.
// @ts-expect-error a typed decorator is not a MethodDecorator (it refuses some methods)
export const typed: MethodDecorator = Cacheable({ key: (id: string) => id });
export const cast = Cacheable({ key: (id: string) => id }) as MethodDecorator;
