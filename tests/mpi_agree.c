/* Run under mpirun -np 2: the weight-agreement check of dist.c. Equal
 * buffers on every rank pass; a buffer that differs in one bit on rank 1 makes
 * dist_check_agree fail on every rank, with a message naming what disagrees,
 * the range of checksums and this rank's own. Exit 0 when all that holds. */
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "check.h"
#include "dist.h"

int main(int argc, char **argv) {
    dist_init(&argc, &argv);
    int rank = dist_rank();
    EXPECT(dist_size() == 2, "run with mpirun -np 2 (size %d)", dist_size());
    float w[1000];
    for (int i = 0; i < 1000; i++) w[i] = (float)i * 0.25f;
    Error err = {{0}};
    EXPECT(dist_check_agree(w, sizeof w, "weights", &err) == 0, "equal buffers: %s", err.msg);

    if (rank == 1) w[999] = nextafterf(w[999], 1e9f);
    unsigned long long own = (unsigned long long)dist_checksum(w, sizeof w);
    EXPECT(dist_check_agree(w, sizeof w, "weights", &err) == -1, "rank %d: a differing bit passed",
           rank);
    char mine[64];
    snprintf(mine, sizeof mine, "rank %d has %016llx", rank, own);
    EXPECT(strstr(err.msg, "the 2 ranks disagree on the weights") && strstr(err.msg, mine),
           "rank %d: message '%s'", rank, err.msg);
    dist_finalize();
    CHECK_DONE(rank ? "mpi_agree rank 1" : "mpi_agree rank 0");
}
