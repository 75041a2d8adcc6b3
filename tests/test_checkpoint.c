/* Unit tests of src/formats/checkpoint.c: byte-identical round trips for every model
 * variant, the file layout, every kind of malformed file (each refused with
 * the path and the problem), the checksums (a flipped bit anywhere is
 * refused), and atomic saving. Files live in a temp folder
 * that is removed at the end. */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "train.h"

static char dir[512];

/* dir/name in a static buffer that holds NPATHS names at once. */
#define NPATHS 4
static const char *at(const char *name) {
    static char paths[NPATHS][1024];
    static int next;
    char *p = paths[next++ % NPATHS];
    snprintf(p, sizeof paths[0], "%s/%s", dir, name);
    return p;
}

/* ---- fixtures ----------------------------------------------------------- */

#define V_TEST 5

typedef struct {
    Config cfg;
    Model m;
    TrainState st;
    uint32_t vocab[V_TEST];
} Fixture;

/* A small model of one variant with random weights and moments. */
static void fixture_make(Fixture *fx, int bias, int qk_tied, int tie_embeddings) {
    Config *c = &fx->cfg;
    config_defaults(c);
    snprintf(c->name, sizeof c->name, "ckpt");
    c->n_layer = 2;
    c->n_head = 2;
    c->n_embd = 8;
    c->block_size = 6;
    c->bias = bias;
    c->qk = qk_tied ? QK_TIED : QK_UNTIED;
    c->tie_embeddings = tie_embeddings;
    ModelShape s = config_model_shape(c, V_TEST);
    model_create(&fx->m, &s, 1);
    Rng r;
    rng_seed(&r, 7);
    model_init_params(&fx->m, &r, INIT_GPT2, 0);
    for (size_t i = 0; i < fx->m.n_params; i++) {
        fx->m.adam_m[i] = (real)(1e-3 * rng_normal(&r));
        fx->m.adam_v[i] = (real)(1e-6 * rng_uniform(&r));
    }
    fx->st = (TrainState){.step = 12, .train_loss = 1.25, .val_loss = NAN, .eval_step = 10};
    static const uint32_t vocab[V_TEST] = {'\n', ' ', 'a', 0xE9, 0x1F600}; /* 1 to 4 bytes */
    memcpy(fx->vocab, vocab, sizeof vocab);
    rng_seed(&fx->st.batch_rng, 99);
}

static int save(const char *path, const Fixture *fx, int with_optim) {
    Error err = {{0}};
    int rc = checkpoint_save(path, &fx->m, &fx->cfg, fx->vocab, V_TEST, &fx->st, with_optim, &err);
    if (rc) fprintf(stderr, "unexpected save error: %s\n", err.msg);
    return rc;
}

static char *file_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    rewind(f);
    char *buf = xmalloc(*len + 1);
    size_t got = fread(buf, 1, *len, f);
    fclose(f);
    buf[got] = '\0';
    return buf;
}

static void file_write(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(p, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = file_read(a, &na), *y = file_read(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

/* Entries in dir whose name contains ".tmp.". */
static int temp_files_left(void) {
    DIR *d = opendir(dir);
    CHECK(d, "cannot list %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* ---- round trips -------------------------------------------------------- */

/* The header lists __metadata__, then the views, then optim.m / optim.v. */
static void expect_layout(const char *path, const Model *m, int with_optim) {
    size_t len;
    char *buf = file_read(path, &len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(unsigned char)buf[i] << (8 * i);
    EXPECT(n % 8 == 0, "header length %llu is not a multiple of 8", (unsigned long long)n);
    cJSON *h = cJSON_ParseWithLength(buf + 8, n);
    EXPECT(h && cJSON_IsObject(h), "header does not parse");
    const cJSON *e = h ? h->child : NULL;
    EXPECT(e && !strcmp(e->string, "__metadata__"), "__metadata__ is not first");
    for (int set = 0; set < (with_optim ? 3 : 1); set++)
        for (int i = 0; i < m->n_views; i++) {
            e = e ? e->next : NULL;
            char want[128];
            snprintf(want, sizeof want, "%s%s", set == 0 ? "" : set == 1 ? "optim.m." : "optim.v.",
                     m->views[i].name);
            EXPECT(e && !strcmp(e->string, want), "entry %s expected", want);
        }
    EXPECT(e && !e->next, "extra entries after the last tensor");
    /* little-endian data: the first float of wte is the first data word */
    float x = (float)m->params[0];
    uint32_t u;
    memcpy(&u, &x, 4);
    const unsigned char *d = (const unsigned char *)buf + 8 + n;
    EXPECT(d[0] == (u & 0xff) && d[1] == ((u >> 8) & 0xff) && d[2] == ((u >> 16) & 0xff) &&
               d[3] == u >> 24, "data is not little-endian F32");
    cJSON_Delete(h);
    free(buf);
}

static void test_round_trip(int bias, int qk_tied, int tie) {
    Fixture fx;
    fixture_make(&fx, bias, qk_tied, tie);
    const char *a = at("a.safetensors"), *b = at("b.safetensors");
    for (int with_optim = 0; with_optim <= 1; with_optim++) {
        EXPECT(save(a, &fx, with_optim) == 0, "save");
        expect_layout(a, &fx.m, with_optim);
        Checkpoint ck;
        Error err = {{0}};
        EXPECT(checkpoint_read(&ck, a, &err) == 0, "read: %s", err.msg);
        if (check_failures) return;
        EXPECT(!memcmp(&ck.shape, &fx.m.shape, sizeof ck.shape), "shape differs");
        EXPECT(ck.V == V_TEST && !memcmp(ck.vocab, fx.vocab, sizeof fx.vocab), "vocab differs");
        EXPECT(ck.has_optim == with_optim && (ck.adam_m != NULL) == with_optim, "has_optim");
        EXPECT(ck.n_params == fx.m.n_params, "n_params");
        EXPECT(ck.state.step == 12 && ck.state.eval_step == 10 && ck.state.train_loss == 1.25 &&
                   isnan(ck.state.val_loss) &&
                   !memcmp(&ck.state.batch_rng, &fx.st.batch_rng, sizeof(Rng)), "state differs");
        EXPECT(ck.cfg.n_layer == 2 && ck.cfg.bias == bias && ck.cfg.qk == fx.cfg.qk &&
                   !strcmp(ck.cfg.name, "ckpt"), "config differs");
        for (size_t i = 0; i < ck.n_params; i++) {
            EXPECT(ck.params[i] == (float)fx.m.params[i], "param %zu", i);
            if (with_optim)
                EXPECT(ck.adam_m[i] == (float)fx.m.adam_m[i] &&
                           ck.adam_v[i] == (float)fx.m.adam_v[i], "moment %zu", i);
        }
        Fixture back = fx;
        model_create(&back.m, &ck.shape, 1);
        back.cfg = ck.cfg;
        back.st = ck.state;
        checkpoint_to_model(&ck, &back.m, 1);
        EXPECT(save(b, &back, with_optim) == 0, "save again");
        EXPECT(files_equal(a, b), "re-saved file differs (bias %d qk_tied %d tie %d optim %d)",
               bias, qk_tied, tie, with_optim);
        model_free(&back.m);
        checkpoint_free(&ck);
    }
    EXPECT(temp_files_left() == 0, "temp files left after saving");
    model_free(&fx.m);
}

/* want_optim = 0 copies the weights only; U+0000 survives as a token. */
static void test_weights_only(void) {
    Fixture fx;
    fixture_make(&fx, 1, 0, 1);
    static const uint32_t with_nul[V_TEST] = {0, '\n', ' ', 'a', 0xE9};
    memcpy(fx.vocab, with_nul, sizeof with_nul);
    const char *a = at("a.safetensors");
    save(a, &fx, 1);
    Checkpoint ck;
    Error err = {{0}};
    EXPECT(checkpoint_read(&ck, a, &err) == 0, "read: %s", err.msg);
    EXPECT(!memcmp(ck.vocab, with_nul, sizeof with_nul), "vocab with U+0000 differs");
    Model m2;
    model_create(&m2, &ck.shape, 1);
    checkpoint_to_model(&ck, &m2, 0);
    int zero = 1;
    for (size_t i = 0; i < m2.n_params; i++) zero &= m2.adam_m[i] == 0 && m2.adam_v[i] == 0;
    EXPECT(zero && m2.params[3] == fx.m.params[3], "want_optim 0 copied moments");
    model_free(&m2);
    checkpoint_free(&ck);
    model_free(&fx.m);
}

/* ---- malformed files ---------------------------------------------------- */

/* A valid file's header as JSON, without its crc32 entries, and a copy of
 * its data section (with room for a few more bytes), to be edited and
 * written back: the structural checks are those of any file, and an edited
 * header with its checksums would be refused as a mismatch (test_checksums). */
#define DATA_SLACK 16
typedef struct {
    cJSON *header;
    char *data;
    size_t data_len;
} Parsed;

static Parsed parsed_load(const char *path) {
    Parsed p = {0};
    size_t len;
    char *file = file_read(path, &len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(unsigned char)file[i] << (8 * i);
    p.header = cJSON_ParseWithLength(file + 8, n);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(p.header, "__metadata__");
    for (cJSON *item = meta->child, *next; item; item = next) {
        next = item->next;
        if (!strncmp(item->string, "crc32.", 6)) cJSON_Delete(cJSON_DetachItemViaPointer(meta, item));
    }
    p.data_len = len - 8 - n;
    p.data = xcalloc(p.data_len + DATA_SLACK, 1);
    memcpy(p.data, file + 8 + n, p.data_len);
    free(file);
    return p;
}

static void parsed_free(Parsed *p) {
    cJSON_Delete(p->header);
    free(p->data);
}

/* Writes length + header text (unpadded) + data. */
static void raw_write(const char *path, const char *header, const void *data, size_t data_len) {
    size_t n = strlen(header);
    char *buf = xmalloc(8 + n + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    memcpy(buf + 8 + n, data, data_len);
    file_write(path, buf, 8 + n + data_len);
    free(buf);
}

static void parsed_write(const char *path, const Parsed *p) {
    char *text = cJSON_PrintUnformatted(p->header);
    raw_write(path, text, p->data, p->data_len);
    free(text);
}

/* Reading path must fail with a message naming it and containing phrase. */
static void expect_refused_at(int line, const char *path, const char *phrase) {
    Checkpoint ck;
    Error err = {{0}};
    int rc = checkpoint_read(&ck, path, &err);
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s: ", path);
    if (rc != -1 || strncmp(err.msg, prefix, strlen(prefix)) || !strstr(err.msg, phrase) ||
        strchr(err.msg, '\n')) {
        fprintf(stderr, "%s:%d: rc %d, message\n  got:  %s\n  want: %s...%s...\n", __FILE__, line,
                rc, err.msg, prefix, phrase);
        check_failures++;
    }
    if (rc == 0) checkpoint_free(&ck);
}
#define expect_refused(path, phrase) expect_refused_at(__LINE__, path, phrase)

static cJSON *meta_of(Parsed *p) {
    return cJSON_GetObjectItemCaseSensitive(p->header, "__metadata__");
}

static void meta_set(Parsed *p, const char *key, const char *value) {
    cJSON_ReplaceItemInObjectCaseSensitive(meta_of(p), key, cJSON_CreateString(value));
}

static cJSON *tensor_of(Parsed *p, const char *name) {
    return cJSON_GetObjectItemCaseSensitive(p->header, name);
}

static void offsets_set(Parsed *p, const char *name, double begin, double end) {
    double o[2] = {begin, end};
    cJSON_ReplaceItemInObjectCaseSensitive(tensor_of(p, name), "data_offsets",
                                           cJSON_CreateDoubleArray(o, 2));
}

static double offset_of(Parsed *p, const char *name, int i) {
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(tensor_of(p, name),
                                                               "data_offsets"), i)->valuedouble;
}

/* A config text with one line replaced (from its key to the line end). */
static char *config_edit(const char *text, const char *key, const char *line) {
    const char *s = strstr(text, key), *e = strchr(s, '\n');
    size_t n = strlen(text) + strlen(line) + 1;
    char *out = xmalloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(s - text), text, line, e);
    return out;
}

typedef void (*Edit)(Parsed *p);

static void e_dtype(Parsed *p) {
    cJSON_ReplaceItemInObjectCaseSensitive(tensor_of(p, "wpe.weight"), "dtype",
                                           cJSON_CreateString("F16"));
}
static void e_shape(Parsed *p) {
    int s[2] = {6, 9};
    cJSON_ReplaceItemInObjectCaseSensitive(tensor_of(p, "wpe.weight"), "shape",
                                           cJSON_CreateIntArray(s, 2));
}
static void e_out_of_range(Parsed *p) {
    offsets_set(p, "optim.v.ln_f.bias", offset_of(p, "optim.v.ln_f.bias", 0),
                offset_of(p, "optim.v.ln_f.bias", 1) + 4);
}
static void e_overlap(Parsed *p) {
    offsets_set(p, "wpe.weight", offset_of(p, "wpe.weight", 0) - 4,
                offset_of(p, "wpe.weight", 1) - 4);
}
static void e_gap(Parsed *p) {
    offsets_set(p, "wpe.weight", offset_of(p, "wpe.weight", 0) + 4,
                offset_of(p, "wpe.weight", 1) + 4);
}
static void e_offsets_not_ints(Parsed *p) {
    offsets_set(p, "wte.weight", 0, 0.5);
}
static void e_truncated(Parsed *p) {
    p->data_len -= 4; /* the last tensor now ends beyond the data section */
}
static void e_trailing(Parsed *p) {
    p->data_len += 4;
}
static void e_missing(Parsed *p) {
    cJSON_DeleteItemFromObjectCaseSensitive(p->header, "blocks.1.ln2.weight");
}
static void e_extra(Parsed *p) {
    cJSON_AddItemToObject(p->header, "extra.weight",
                          cJSON_Duplicate(tensor_of(p, "ln_f.bias"), 1));
}
static void e_twice(Parsed *p) {
    cJSON_AddItemToObject(p->header, "ln_f.bias", cJSON_Duplicate(tensor_of(p, "ln_f.bias"), 1));
}
static void e_optim_partial(Parsed *p) {
    cJSON_DeleteItemFromObjectCaseSensitive(p->header, "optim.v.blocks.0.attn.q.weight");
}
static void e_no_meta(Parsed *p) {
    cJSON_DeleteItemFromObjectCaseSensitive(p->header, "__metadata__");
}
static void e_meta_twice(Parsed *p) {
    cJSON_AddItemToObject(p->header, "__metadata__", cJSON_Duplicate(meta_of(p), 1));
}
static void e_meta_not_object(Parsed *p) {
    cJSON_ReplaceItemInObjectCaseSensitive(p->header, "__metadata__", cJSON_CreateString("x"));
}
static void e_meta_key_twice(Parsed *p) {
    cJSON_AddItemToObject(meta_of(p), "step", cJSON_CreateString("12"));
}
static void e_meta_key_missing(Parsed *p) {
    cJSON_DeleteItemFromObjectCaseSensitive(meta_of(p), "rng");
}
static void e_meta_not_string(Parsed *p) {
    cJSON_ReplaceItemInObjectCaseSensitive(meta_of(p), "step", cJSON_CreateNumber(12));
}
static void e_format(Parsed *p) { meta_set(p, "format", "qkscope/2"); }
static void e_config(Parsed *p) {
    const char *text = cJSON_GetObjectItemCaseSensitive(meta_of(p), "config")->valuestring;
    char *bad = config_edit(text, "n_embd =", "n_embd = abc");
    meta_set(p, "config", bad);
    free(bad);
}
static void e_config_tied(Parsed *p) {
    const char *text = cJSON_GetObjectItemCaseSensitive(meta_of(p), "config")->valuestring;
    char *tied = config_edit(text, "qk =", "qk = tied");
    meta_set(p, "config", tied);
    free(tied);
}
static void e_vocab_not_array(Parsed *p) { meta_set(p, "vocab", "\"abc\""); }
static void e_vocab_unsorted(Parsed *p) { meta_set(p, "vocab", "[\"\\n\",\"a\",\" \",\"b\",\"c\"]"); }
static void e_vocab_long(Parsed *p) { meta_set(p, "vocab", "[\"\\n\",\" \",\"ab\",\"b\",\"c\"]"); }
static void e_vocab_v(Parsed *p) { meta_set(p, "vocab", "[\"\\n\",\" \",\"a\",\"b\",\"c\",\"d\"]"); }
static void e_step(Parsed *p) { meta_set(p, "step", "x"); }
static void e_rng(Parsed *p) { meta_set(p, "rng", "0123,4567"); }
static void e_loss(Parsed *p) { meta_set(p, "train_loss", "1.5x"); }
static void e_eval_step(Parsed *p) { meta_set(p, "eval_step", "13"); }
static void e_nan(Parsed *p) {
    /* NaN (0x7fc00000, little-endian) as element 3 of blocks.0.ln1.weight */
    size_t at4 = (size_t)offset_of(p, "blocks.0.ln1.weight", 0) + 4 * 3;
    memcpy(p->data + at4, "\x00\x00\xc0\x7f", 4);
}
static void e_inf(Parsed *p) {
    size_t at4 = (size_t)offset_of(p, "optim.m.wte.weight", 0);
    memcpy(p->data + at4, "\x00\x00\x80\xff", 4);
}

static void test_malformed(void) {
    Fixture fx;
    fixture_make(&fx, 0, 0, 1);
    const char *good = at("good.safetensors"), *bad = at("bad.safetensors");
    save(good, &fx, 1);

    /* Rewriting a valid file without the padding still reads. */
    Parsed p = parsed_load(good);
    parsed_write(bad, &p);
    Checkpoint ck;
    Error err = {{0}};
    EXPECT(checkpoint_read(&ck, bad, &err) == 0, "unpadded header refused: %s", err.msg);
    checkpoint_free(&ck);
    parsed_free(&p);

    static const struct {
        Edit edit;
        const char *phrase;
    } cases[] = {
        {e_dtype, "tensor 'wpe.weight': dtype 'F16', expected 'F32'"},
        {e_shape, "tensor 'wpe.weight': shape [6,9], expected [6,8] for the stored config"},
        {e_out_of_range, "tensor 'optim.v.ln_f.bias': data_offsets"},
        {e_out_of_range, "out of range"},
        {e_overlap, "tensor 'wpe.weight': data_offsets [156, 348] overlap the previous tensor"},
        {e_gap, "tensor 'wpe.weight': data_offsets [164, 356] leave a gap after the previous"},
        {e_offsets_not_ints, "tensor 'wte.weight': data_offsets is not [begin, end] with integers"},
        {e_truncated, "out of range (the data section has"},
        {e_trailing, "4 bytes of data after the last tensor"},
        {e_missing, "missing tensor 'blocks.1.ln2.weight'"},
        {e_extra, "unknown tensor 'extra.weight'"},
        {e_twice, "tensor 'ln_f.bias' appears twice"},
        {e_optim_partial, "optimizer state incomplete: missing tensor "
                          "'optim.v.blocks.0.attn.q.weight'"},
        {e_no_meta, "header has no __metadata__"},
        {e_meta_twice, "header has __metadata__ twice"},
        {e_meta_not_object, "__metadata__ is not a JSON object"},
        {e_meta_key_twice, "metadata 'step' appears twice"},
        {e_meta_key_missing, "metadata has no 'rng'"},
        {e_meta_not_string, "metadata 'step' is not a string"},
        {e_format, "metadata 'format' is 'qkscope/2', expected 'qkscope/1'"},
        {e_config, "metadata 'config': config:"},
        {e_config, "n_embd = 'abc': expected an integer"},
        {e_config_tied, "unknown tensor 'blocks.0.attn.k.weight'"},
        {e_vocab_not_array, "metadata 'vocab' is not a JSON array"},
        {e_vocab_unsorted, "metadata 'vocab' is not sorted by code point (entry 2"},
        {e_vocab_long, "metadata 'vocab' entry 2 is not a string of one character"},
        {e_vocab_v, "tensor 'wte.weight': shape [5,8], expected [6,8]"},
        {e_step, "metadata 'step' is 'x', expected an integer >= 0"},
        {e_rng, "metadata 'rng' is '0123,4567'"},
        {e_loss, "metadata 'train_loss' is '1.5x'"},
        {e_eval_step, "metadata 'eval_step' is '13', expected an integer from -1 to step (12)"},
        {e_nan, "tensor 'blocks.0.ln1.weight' has a non-finite value (nan) at index 3"},
        {e_inf, "tensor 'optim.m.wte.weight' has a non-finite value (inf) at index 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        p = parsed_load(good);
        cases[i].edit(&p);
        parsed_write(bad, &p);
        expect_refused(bad, cases[i].phrase);
        parsed_free(&p);
    }

    /* Files that are not safetensors at all. */
    const char *text = "hello, this is a text file and not a checkpoint\n";
    file_write(bad, text, strlen(text));
    expect_refused(bad, "not a safetensors file: header length");
    file_write(bad, "", 0);
    expect_refused(bad, "not a safetensors file: 0 bytes");
    file_write(bad, "\x10\0\0\0\0", 5);
    expect_refused(bad, "not a safetensors file: 5 bytes");
    file_write(bad, "\xe8\x03\0\0\0\0\0\0{\"a\":1}", 15); /* 1000 */
    expect_refused(bad, "header length 1000 exceeds the 7 bytes after it");
    file_write(bad, "\x00\xe4\x0b\x54\x02\0\0\0{}      ", 16); /* 10e9 */
    expect_refused(bad, "header length 10000000000 exceeds the 8 bytes after it");
    /* beyond the safetensors header limit: a sparse file long enough for it */
    FILE *f = fopen(bad, "wb");
    CHECK(f && fwrite("\x08\xe1\xf5\x05\0\0\0\0", 1, 8, f) == 8 && fflush(f) == 0 &&
              ftruncate(fileno(f), 8 + 100000008) == 0 && fclose(f) == 0,
          "cannot write %s", bad); /* 100000008 */
    expect_refused(bad, "header length 100000008 exceeds the limit of 100000000 bytes");
    raw_write(bad, "{\"__metadata__\": {\"format\": ", "", 0);
    expect_refused(bad, "header is not valid JSON");
    raw_write(bad, "{}  x  ", "", 0);
    expect_refused(bad, "header is not valid JSON (unexpected data at byte 4)");
    raw_write(bad, "[1, 2]", "", 0);
    expect_refused(bad, "header is not a JSON object");
    expect_refused(dir, "is a directory, expected a safetensors file");
    expect_refused(at("none.safetensors"), "cannot open checkpoint: No such file or directory");
    model_free(&fx.m);
}

/* ---- checksums ---------------------------------------------------------- */

/* With one bit of byte `byte` of the file at path flipped (in place: a
 * rewritten file would wait on the disk each time), reading it must fail;
 * phrase, when not NULL, must be in the message. The bit is flipped back. */
static void expect_flip_refused(const char *path, size_t byte, const char *phrase) {
    int fd = open(path, O_RDWR);
    unsigned char was, now;
    CHECK(fd >= 0 && pread(fd, &was, 1, (off_t)byte) == 1, "cannot read %s", path);
    now = was ^ (unsigned char)(1u << (byte % 8));
    CHECK(pwrite(fd, &now, 1, (off_t)byte) == 1, "cannot write %s", path);
    Checkpoint ck;
    Error err = {{0}};
    int rc = checkpoint_read(&ck, path, &err);
    if (rc == 0) {
        checkpoint_free(&ck);
        fprintf(stderr, "a bit flipped in byte %zu: the file loads\n", byte);
        check_failures++;
    } else if (phrase && (!strstr(err.msg, phrase) || strchr(err.msg, '\n'))) {
        fprintf(stderr, "a bit flipped in byte %zu:\n  got:  %s\n  want: ...%s...\n", byte,
                err.msg, phrase);
        check_failures++;
    }
    CHECK(pwrite(fd, &was, 1, (off_t)byte) == 1 && close(fd) == 0, "cannot write %s", path);
}

/* A saved file verifies every tensor; one bit flipped in the header or in a
 * tensor is refused, as a header mismatch (but inside the crc32.header entry
 * itself, where any refusal will do) or as the mismatch of the tensor whose
 * bytes hold it; the same file without its crc32 entries loads unverified. */
static void test_checksums(void) {
    Fixture fx;
    fixture_make(&fx, 1, 0, 0);
    const char *good = at("crc.safetensors"), *bad = at("crc_bad.safetensors");
    save(good, &fx, 1);
    int n_tensors = 3 * fx.m.n_views, n_verified = -1, verified = -1;
    Checkpoint ck;
    Error err = {{0}};
    EXPECT(checkpoint_read(&ck, good, &err) == 0, "read: %s", err.msg);
    EXPECT(ck.n_verified == n_tensors, "verified %d tensors of %d", ck.n_verified, n_tensors);
    checkpoint_free(&ck);
    EXPECT(checkpoint_verify(good, &n_verified, &err) == 0 && n_verified == n_tensors,
           "checkpoint_verify: %d tensors (%s)", n_verified, err.msg);
    EXPECT(checkpoint_verify_header(good, &verified, &err) == 0 && verified == 1,
           "checkpoint_verify_header: %d (%s)", verified, err.msg);

    size_t len;
    char *file = file_read(good, &len);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)(unsigned char)file[i] << (8 * i);
    const char *entry = strstr(file + 8, "\"crc32.header\":\"");
    CHECK(entry, "no crc32.header entry in %s", good);
    size_t entry_b = (size_t)(entry - file), entry_e = entry_b + strlen("\"crc32.header\":\"") + 9;
    /* every byte of the header (a bit a byte, in turn), and the first, a
     * middle and the last byte of every tensor */
    file_write(bad, file, len);
    for (size_t i = 8; i < 8 + n; i++)
        expect_flip_refused(bad, i, i >= entry_b && i < entry_e ? NULL
                                                               : "checksum mismatch in the header");
    size_t at_byte = 8 + n;
    for (int k = 0; k < n_tensors; k++) {
        const ParamView *v = &fx.m.views[k % fx.m.n_views];
        char phrase[160];
        snprintf(phrase, sizeof phrase, "checksum mismatch in tensor '%s%s': expected crc32 ",
                 k < fx.m.n_views ? "" : k < 2 * fx.m.n_views ? "optim.m." : "optim.v.", v->name);
        size_t picks[3] = {at_byte, at_byte + 2 * v->numel + 1, at_byte + 4 * v->numel - 1};
        for (int j = 0; j < 3; j++) expect_flip_refused(bad, picks[j], phrase);
        at_byte += 4 * v->numel;
    }
    EXPECT(at_byte == len, "tensors end at %zu, the file at %zu", at_byte, len);
    free(file);

    Parsed p = parsed_load(good);
    parsed_write(bad, &p);
    parsed_free(&p);
    EXPECT(checkpoint_read(&ck, bad, &err) == 0, "without checksums: %s", err.msg);
    EXPECT(ck.n_verified == 0, "a file without checksums verified %d tensors", ck.n_verified);
    checkpoint_free(&ck);
    EXPECT(checkpoint_verify(bad, &n_verified, &err) == 0 && n_verified == 0,
           "checkpoint_verify without checksums: %d (%s)", n_verified, err.msg);
    EXPECT(checkpoint_verify_header(bad, &verified, &err) == 0 && verified == 0,
           "checkpoint_verify_header without checksums: %d (%s)", verified, err.msg);
    model_free(&fx.m);
}

/* ---- atomic saving ------------------------------------------------------ */

static void test_atomic(void) {
    Fixture fx;
    fixture_make(&fx, 1, 1, 0);
    const char *good = at("keep.safetensors"), *copy = at("copy.safetensors");
    EXPECT(save(good, &fx, 1) == 0, "save");
    EXPECT(save(copy, &fx, 1) == 0, "save");
    Error err = {{0}};

    /* A folder that does not exist. */
    const char *missing = at("nofolder/x.safetensors");
    EXPECT(checkpoint_save(missing, &fx.m, &fx.cfg, fx.vocab, V_TEST, &fx.st, 1, &err) == -1, "saved");
    EXPECT(strstr(err.msg, missing) && strstr(err.msg, "cannot write checkpoint: No such file"),
           "%s", err.msg);

    /* A folder path that is a regular file. */
    char under_file[1100];
    snprintf(under_file, sizeof under_file, "%s/x.safetensors", good);
    EXPECT(checkpoint_save(under_file, &fx.m, &fx.cfg, fx.vocab, V_TEST, &fx.st, 1, &err) == -1, "saved");
    EXPECT(strstr(err.msg, "cannot write checkpoint: Not a directory"), "%s", err.msg);

    /* A write that fails part way (a file size limit stands in for a full
     * disk): the previous file stays as it was. */
    struct rlimit old, small;
    getrlimit(RLIMIT_FSIZE, &old);
    small = old;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &small);
    fx.st.step = 13;
    int rc = checkpoint_save(good, &fx.m, &fx.cfg, fx.vocab, V_TEST, &fx.st, 1, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    EXPECT(rc == -1 && strstr(err.msg, good) && strstr(err.msg, "cannot write checkpoint: File "
                                                                "too large"), "%s", err.msg);
    EXPECT(files_equal(good, copy), "a failed save changed the previous file");
    EXPECT(temp_files_left() == 0, "a failed save left its temp file");
    model_free(&fx.m);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qk_test_ckpt_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir), "mkdtemp failed");
    for (int variant = 0; variant < 8; variant++)
        test_round_trip(variant & 1, (variant >> 1) & 1, (variant >> 2) & 1);
    test_weights_only();
    test_malformed();
    test_checksums();
    test_atomic();
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    CHECK_DONE("test_checkpoint");
}
