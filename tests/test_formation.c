/* formation_event (src/observe/report.c), the halfway step of the report's
 * Formation panel, formation.svg and formation.csv: on made-up series, the
 * first point that has covered half the way from the first value to the last,
 * rising or falling; none for a flat series or a single point; missing
 * points left out. */
#include <math.h>

#include "check.h"
#include "report.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void expect_event(const char *what, const double *step, const double *v, size_t n,
                         double want_step, double want_first, double want_last) {
    FormationEvent e = formation_event(step, v, n);
    int same_step = isnan(want_step) ? isnan(e.step) : e.step == want_step;
    EXPECT(same_step, "%s: step %g, expected %g", what, e.step, want_step);
    int same_first = isnan(want_first) ? isnan(e.first) : e.first == want_first;
    int same_last = isnan(want_last) ? isnan(e.last) : e.last == want_last;
    EXPECT(same_first && same_last, "%s: first %g, last %g, expected %g, %g", what, e.first,
           e.last, want_first, want_last);
}

int main(void) {
    const double steps[] = {0, 50, 100, 150, 200, 250, 300};
    /* a plateau, then a jump: halfway (0.1 + 0.9 / 2 = 0.55) first reached at 200 */
    const double jump[] = {0.1, 0.36, 0.37, 0.36, 0.8, 0.98, 1.0};
    expect_event("jump", steps, jump, N(steps), 200, 0.1, 1.0);
    /* exactly halfway counts as reached */
    const double exact[] = {0.0, 0.2, 0.5, 0.7, 0.9, 1.0, 1.0};
    expect_event("exactly halfway", steps, exact, N(steps), 100, 0.0, 1.0);
    /* falling (a counterfactual collapsing): halfway from 0.8 to 0.1 is 0.45; 0.46
     * is not there yet */
    const double fall[] = {0.8, 0.79, 0.6, 0.46, 0.3, 0.12, 0.1};
    expect_event("falling", steps, fall, N(steps), 200, 0.8, 0.1);
    /* an overshoot before the end still counts at its first crossing */
    const double over[] = {0.2, 0.2, 0.9, 0.7, 0.6, 0.6, 0.6};
    expect_event("overshoot", steps, over, N(steps), 100, 0.2, 0.6);
    /* a dip below the start before a rise: the crossing after it */
    const double dip[] = {0.5, 0.3, 0.2, 0.4, 0.8, 0.9, 0.9};
    expect_event("dip", steps, dip, N(steps), 200, 0.5, 0.9);
    /* flat: first value = last value, no event, whatever lies between */
    const double flat[] = {0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3};
    expect_event("flat", steps, flat, N(steps), NAN, 0.3, 0.3);
    const double round_trip[] = {0.3, 0.9, 0.1, 0.5, 0.2, 0.6, 0.3};
    expect_event("back where it started", steps, round_trip, N(steps), NAN, 0.3, 0.3);
    /* missing values (NAN) are left out, at either end and inside */
    const double gaps[] = {NAN, 0.0, NAN, 0.4, 0.7, 1.0, NAN};
    expect_event("missing values", steps, gaps, N(steps), 200, 0.0, 1.0);
    /* a single point, or none: no event */
    expect_event("one point", steps, jump, 1, NAN, 0.1, 0.1);
    expect_event("no point", steps, jump, 0, NAN, NAN, NAN);
    const double none[] = {NAN, NAN, NAN};
    expect_event("only missing values", steps, none, N(none), NAN, NAN, NAN);
    /* two points: the last one is the event */
    expect_event("two points", steps, jump, 2, 50, 0.1, 0.36);
    /* pure: the same series again gives the same event */
    FormationEvent a = formation_event(steps, jump, N(steps));
    FormationEvent b = formation_event(steps, jump, N(steps));
    EXPECT(a.step == b.step && a.first == b.first && a.last == b.last, "not the same event twice");
    CHECK_DONE("formation");
}
