/* qkscope lookup CKPT [--data FILE] [--records N]: on the synthetic lookup
 * task (scripts/make_lookup_corpus), how much attention the query at each '>'
 * puts on the definition "k=v" of the key k it asks for, per layer and head,
 * and how often the model then predicts v. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "qk.h"

static void usage(FILE *f) {
    fprintf(f, "usage: qkscope lookup CKPT [--data FILE] [--records N]\n"
               "  For records 'b=7;x=2;|x>2|b>7|' (one per line), the attention that the\n"
               "  position of each '>' (whose next character is the value asked for) puts\n"
               "  on the three characters 'x=2' of the right definition, per layer and\n"
               "  head, against the chance level 3/(position+1); and the accuracy of the\n"
               "  predicted value.\n"
               "  --data FILE   records to use (default: the validation split of the run's corpus)\n"
               "  --records N   at most N records (default 500)\n");
}

int main(int argc, char **argv) {
    const char *data = NULL, *args[1];
    long max_records = 500;
    int npos, status;
    Error err;
    const CliOption opts[] = {{"--data", OPT_STR, &data, 0, 0},
                              {"--records", OPT_LONG, &max_records, 1, 10000000},
                              {NULL, 0, NULL, 0, 0}};
    if (cli_args(argc, argv, "lookup", opts, args, 1, 1, &npos, usage, &status)) return status;
    const char *ckpt = args[0];
    Checkpoint ck;
    Model m;
    if (cli_load_model(ckpt, &ck, &m, 1, &err)) return cli_fail(&err);
    const ModelShape *s = &ck.shape;
    int L = s->L, NH = s->NH, rc = 0;
    unsigned char *bytes = NULL;
    size_t len, pos = 0;
    double *mass = xcalloc((size_t)L * NH, sizeof(double)), chance = 0;
    long asks = 0, correct = 0, records = 0;
    const char *src = data ? data : ck.cfg.data_path;
    if (text_read_file(src, &bytes, &len, &err)) {
        rc = cli_fail(&err);
        goto done;
    }
    if (!data) { /* the validation split: from character n_train on, whole lines only */
        Corpus c;
        if (corpus_load(&c, src, ck.cfg.val_fraction, ck.cfg.block_size, &err)) {
            rc = cli_fail(&err);
            goto done;
        }
        for (size_t chars = 0; pos < len; pos++) /* byte offset of character n_train */
            if ((bytes[pos] & 0xC0) != 0x80 && chars++ == c.n_train) break;
        while (pos > 0 && pos < len && bytes[pos - 1] != '\n') pos++;
        corpus_free(&c);
    }
    while (pos < len && records < max_records) {
        size_t end = pos;
        while (end < len && bytes[end] != '\n') end++;
        int *tok;
        size_t n;
        if (text_tokenize(ck.vocab, ck.V, src, bytes + pos, end - pos, &tok, &n, &err)) {
            rc = cli_fail(&err);
            goto done;
        }
        const unsigned char *line = bytes + pos;
        pos = end + 1;
        /* records are ASCII, so byte i is character i */
        if (n < 2 || n != (size_t)(end - (line - bytes)) || n > (size_t)s->maxT) {
            free(tok);
            continue;
        }
        int T = (int)n;
        model_forward(&m, tok, NULL, 1, T);
        records++;
        for (int p = 1; p + 1 < T; p++) {
            if (line[p] != '>') continue;
            int def = -1;
            for (int j = 0; j + 2 < T && line[j] != '|'; j++)
                if (line[j] == line[p - 1] && line[j + 1] == '=') def = j;
            if (def < 0) continue;
            asks++;
            chance += 3.0 / (p + 1);
            for (int l = 0; l < L; l++)
                for (int h = 0; h < NH; h++) {
                    const real *row = m.acts.att + (((size_t)l * NH + h) * T + p) * T;
                    mass[l * NH + h] += row[def] + row[def + 1] + row[def + 2];
                }
            const real *lg = m.acts.logits + (size_t)p * s->V;
            int best = 0;
            for (int k = 1; k < s->V; k++)
                if (lg[k] > lg[best]) best = k;
            correct += best == tok[def + 2];
        }
        free(tok);
    }
    if (!asks) {
        fprintf(stderr, "qkscope: %s: no lookup records (lines like 'b=7;x=2;|x>2|') of at most "
                        "block_size = %d characters\n", src, s->maxT);
        rc = EXIT_BADINPUT;
        goto done;
    }
    printf("lookup: %ld records, %ld lookups; value accuracy %.1f%%; chance attention mass %.3f\n",
           records, asks, 100.0 * correct / asks, chance / asks);
    printf("layer head  mass on the right definition\n");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++) printf("%5d %4d  %.3f\n", l, h, mass[l * NH + h] / asks);
done:
    free(bytes);
    free(mass);
    model_free(&m);
    checkpoint_free(&ck);
    return rc;
}
