/** Buckets of `db.client.operation.duration` in the database semantic conventions, seconds. */
export const DURATION_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10,
]);
