/** A product of the catalogue. */
export interface Product {
  id: string;
  name: string;
  /** Price in euros. */
  price: number;
  stock: number;
  updatedAt: string;
}
