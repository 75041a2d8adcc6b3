/* The project's PRNG: one stream per use (init, batches, task records). */
#ifndef QK_RNG_H
#define QK_RNG_H

#include <stdint.h>

/* xoshiro256** seeded through splitmix64; see rng.c. */
typedef struct {
    uint64_t s[4];
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_next(Rng *r);
/* splitmix64's output function: a bijection of 64-bit words that mixes every
 * input bit into every output bit, for seeds derived from counters. */
uint64_t rng_mix(uint64_t x);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t rng_below(Rng *r, uint64_t n);
/* Uniform double in [0, 1). */
double rng_uniform(Rng *r);
/* Standard normal (Box-Muller; no cached second value, so the state alone
 * determines the stream). */
double rng_normal(Rng *r);

#endif
