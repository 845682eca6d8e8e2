"""Developer tooling that is not the product: the reference bench, the toy world, load test, mutation runner."""
