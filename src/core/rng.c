#include "rng.h"

#include <math.h>

#include "common.h"

/* Generator: xoshiro256** (Blackman and Vigna, "Scrambled linear pseudorandom
 * number generators"). Seeding: splitmix64 (Steele, Lea and Flood, "Fast
 * splittable pseudorandom number generators"), the seeding the xoshiro authors
 * recommend, so that any 64-bit seed, 0 included, gives a well-mixed state. */

uint64_t rng_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static uint64_t splitmix64_next(uint64_t *x) {
    return rng_mix(*x += 0x9E3779B97F4A7C15u);
}

static uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void rng_seed(Rng *r, uint64_t seed) {
    /* splitmix64's output function is a bijection and its successive states
     * differ, so at most one of four outputs is 0: never the all-zero state
     * that xoshiro cannot leave. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64_next(&x);
}

uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

uint64_t rng_below(Rng *r, uint64_t n) {
    CHECK(n > 0, "rng_below: empty range");
    /* 2^64 mod n draws at the bottom would make small results more likely;
     * rejecting them leaves a whole number of copies of [0, n). */
    uint64_t reject = (0 - n) % n;
    uint64_t x;
    do x = rng_next(r); while (x < reject);
    return x % n;
}

double rng_uniform(Rng *r) {
    /* The top 53 bits fill a double's mantissa exactly: multiples of 2^-53. */
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(Rng *r) {
    const double two_pi = 6.283185307179586476925;
    double u1 = rng_uniform(r);
    double u2 = rng_uniform(r);
    /* 1 - u1 lies in (0, 1], so the log is finite. */
    return sqrt(-2.0 * log(1.0 - u1)) * cos(two_pi * u2);
}
