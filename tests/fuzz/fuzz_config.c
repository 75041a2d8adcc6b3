/* libFuzzer harness: the config parser (src/formats/config.c, inih underneath).
 *
 * Input: INI text, optionally followed by overrides, each introduced by a
 * 0xFF byte (which can never occur in valid UTF-8, so the INI part reaches the
 * parser unchanged):  TEXT [0xFF "section.key=value"]...
 *
 * Checks, beyond "no crash, no sanitizer report, no exit":
 *  - config_load_string(TEXT) and config_load(file holding TEXT) agree (same
 *    status, message and Config) when TEXT has no NUL byte and there are no
 *    overrides;
 *  - every refusal is one non-empty line without control characters;
 *  - an accepted config survives config_to_string -> config_load_string
 *    unchanged (the checkpoint and runs/<name>/config.ini rely on it), and
 *    writing it again gives the same text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

#define MAX_OVERRIDES 8

static void check_round_trip(const Config *c) {
    char *text = config_to_string(c);
    Config back;
    Error err;
    int rc = config_load_string(&back, text, "round-trip", &err);
    FUZZ_ASSERT(rc == 0, "the written config does not load back: %s\n--- text ---\n%s", err.msg,
                text);
    FUZZ_ASSERT(memcmp(c, &back, sizeof back) == 0,
                "the written config loads back as a different Config\n--- text ---\n%s", text);
    char *again = config_to_string(&back);
    FUZZ_ASSERT(strcmp(text, again) == 0, "writing the config twice gives different text");
    free(again);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = memchr(data, 0xFF, size);
    size_t tlen = sep ? (size_t)(sep - data) : size;
    char *text = malloc(tlen + 1);
    if (tlen) memcpy(text, data, tlen);
    text[tlen] = '\0';

    /* Overrides: the 0xFF-separated segments after the text. */
    char *ov_buf = NULL;
    char *ov[MAX_OVERRIDES];
    int n_ov = 0;
    if (sep) {
        size_t rest = size - tlen - 1;
        ov_buf = malloc(rest + 1);
        if (rest) memcpy(ov_buf, sep + 1, rest);
        ov_buf[rest] = '\0';
        char *p = ov_buf;
        for (;;) {
            if (n_ov == MAX_OVERRIDES) break;
            ov[n_ov++] = p;
            char *next = memchr(p, 0xFF, (size_t)(ov_buf + rest - p));
            if (!next) break;
            *next = '\0';
            p = next + 1;
        }
    }

    char path[256];
    fuzz_tmp_path(path, sizeof path, "config", ".ini");

    /* The string entry point, named like the file so that the default run
     * name and the messages can be compared. */
    Config c1, c2;
    Error e1, e2;
    memset(&c1, 0, sizeof c1);
    int rc1 = config_load_string(&c1, text, path, &e1);
    if (rc1 == 0)
        check_round_trip(&c1);
    else
        fuzz_check_message(&e1);

    /* The file entry point, with the overrides. */
    if (fuzz_write_file(path, data, tlen) == 0) {
        memset(&c2, 0, sizeof c2);
        int rc2 = config_load(&c2, path, n_ov, ov, &e2);
        if (rc2 == 0)
            check_round_trip(&c2);
        else
            fuzz_check_message(&e2);
        if (n_ov == 0 && strlen(text) == tlen) {
            FUZZ_ASSERT(rc1 == rc2, "config_load_string says %d (%s), config_load says %d (%s)",
                        rc1, rc1 ? e1.msg : "ok", rc2, rc2 ? e2.msg : "ok");
            if (rc1)
                FUZZ_ASSERT(strcmp(e1.msg, e2.msg) == 0, "different messages:\n  %s\n  %s",
                            e1.msg, e2.msg);
            else
                FUZZ_ASSERT(memcmp(&c1, &c2, sizeof c1) == 0, "different configs");
        }
        unlink(path);
    }

    free(ov_buf);
    free(text);
    return 0;
}
