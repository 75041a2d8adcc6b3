/* Checkpoints as safetensors files.
 *
 * Layout: u64 little-endian N, N bytes of JSON header (padded with trailing
 * spaces to a multiple of 8), then the data section: raw little-endian F32
 * row-major tensors. Each tensor entry is
 *   "name": {"dtype": "F32", "shape": [rows, cols] or [rows],
 *            "data_offsets": [begin, end]}
 * with offsets relative to the data section, contiguous in header order (the
 * first begins at 0, the last ends at the end of the file).
 *
 * Tensors: every view of model_views() under its name (wte.weight,
 * wpe.weight, blocks.{l}.ln1.weight, ..., ln_f.bias, lm_head.weight when
 * untied), in that order; with the optimizer state, then optim.m.<name> for
 * every view, then optim.v.<name> for every view.
 *
 * __metadata__ (every value a string):
 *   format      "qkscope/1"
 *   config      the resolved config as INI text (config_to_string)
 *   vocab       JSON array of one-character strings, index = token id, sorted
 *               by code point; U+0000 is stored as "" (a C JSON library cannot
 *               carry a NUL inside a string)
 *   step        optimizer updates done, decimal
 *   rng         batch sampler state: 4 words of 16 lowercase hex digits,
 *               joined by ','
 *   train_loss  last eval losses, "%.9g", or "nan" when none
 *   val_loss
 *   eval_step   step of that eval, -1 when none
 *   crc32.header  CRC-32 (zlib's) of the N header bytes, padding included,
 *               with this value's 8 digits read as "00000000": the writer
 *               writes that placeholder, computes, and patches the digits
 *   crc32.<name>  CRC-32 of tensor <name>'s bytes in the file, one key per
 *               tensor (moments included); all values 8 lowercase hex digits
 * A file without any crc32.* key (written before they existed, or by another
 * tool) loads as unverified; with one, every tensor and the header must have
 * theirs, and every one must match.
 *
 * The reader trusts nothing: every size, offset and string is checked against
 * the file's real size and the stored config before memory is allocated or
 * data is read. Other metadata keys are ignored (safetensors tools add their
 * own); other tensors are refused. */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* The header limit of the safetensors reference implementation. */
#define HEADER_MAX 100000000u
/* Tensor data passes through a buffer of this many floats. */
#define CHUNK_FLOATS 16384

/* Tensor sets in file order: parameters, then the two AdamW moments. */
enum { SET_PARAMS, SET_M, SET_V, N_SETS };
static const char *const set_prefix[N_SETS] = {"", "optim.m.", "optim.v."};

/* The checksum keys: CRC_PREFIX + tensor name, and the header's. */
#define CRC_PREFIX "crc32."
#define CRC_HEADER_KEY CRC_PREFIX "header"
#define CRC_PLACEHOLDER "00000000"

static const char *const meta_keys[] = {"format", "config", "vocab", "step",
                                        "rng", "train_loss", "val_loss", "eval_step"};
enum { M_FORMAT, M_CONFIG, M_VOCAB, M_STEP, M_RNG, M_TRAIN_LOSS, M_VAL_LOSS, M_EVAL_STEP,
       N_META };

/* cJSON reports allocation failure as NULL; like xmalloc, that is fatal. */
static void *json_ok(void *p) {
    if (!p) die("out of memory building the checkpoint header");
    return p;
}

/* Byte order is spelled out with shifts, so the file is little-endian on any
 * host. */
static void f32_to_le(unsigned char *out, float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    for (int i = 0; i < 4; i++) out[i] = (unsigned char)(u >> (8 * i));
}

static float f32_from_le(const unsigned char *in) {
    uint32_t u = 0;
    for (int i = 0; i < 4; i++) u |= (uint32_t)in[i] << (8 * i);
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* zlib's CRC-32 continued over n bytes; crc32_z takes a size_t length. */
static uint32_t crc_add(uint32_t crc, const void *p, size_t n) {
    return (uint32_t)crc32_z(crc, p, n);
}

/* ---- writing ----------------------------------------------------------- */

/* A tensor's name in the file: its set's prefix and the view's name. */
typedef char TensorName[sizeof ((ParamView *)0)->name + 16];

static char *vocab_to_json(const uint32_t *vocab, int V) {
    cJSON *arr = json_ok(cJSON_CreateArray());
    for (int i = 0; i < V; i++) {
        char s[5];
        s[utf8_encode(vocab[i], s)] = '\0';
        cJSON_AddItemToArray(arr, json_ok(cJSON_CreateString(s)));
    }
    char *text = json_ok(cJSON_PrintUnformatted(arr));
    cJSON_Delete(arr);
    return text;
}

static void format_loss(double x, char *out, size_t n) {
    if (isnan(x))
        snprintf(out, n, "nan");
    else
        snprintf(out, n, "%.9g", x);
}

static cJSON *metadata_build(const Config *cfg, const uint32_t *vocab, int V,
                             const TrainState *st, const TensorName *names,
                             const uint32_t *crcs, int n_tensors) {
    char step[32], rng[80], train_loss[40], val_loss[40], eval_step[32];
    const uint64_t *s = st->batch_rng.s;
    snprintf(step, sizeof step, "%d", st->step);
    snprintf(rng, sizeof rng, "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64, s[0],
             s[1], s[2], s[3]);
    format_loss(st->train_loss, train_loss, sizeof train_loss);
    format_loss(st->val_loss, val_loss, sizeof val_loss);
    snprintf(eval_step, sizeof eval_step, "%d", st->eval_step);
    char *config = config_to_string(cfg);
    char *vocab_json = vocab_to_json(vocab, V);
    const char *values[N_META] = {CHECKPOINT_FORMAT, config, vocab_json, step,
                                  rng, train_loss, val_loss, eval_step};
    cJSON *meta = json_ok(cJSON_CreateObject());
    for (int i = 0; i < N_META; i++) json_ok(cJSON_AddStringToObject(meta, meta_keys[i], values[i]));
    json_ok(cJSON_AddStringToObject(meta, CRC_HEADER_KEY, CRC_PLACEHOLDER));
    for (int i = 0; i < n_tensors; i++) {
        char key[sizeof names[i] + sizeof CRC_PREFIX], hex[9];
        snprintf(key, sizeof key, CRC_PREFIX "%s", names[i]);
        snprintf(hex, sizeof hex, "%08" PRIx32, crcs[i]);
        json_ok(cJSON_AddStringToObject(meta, key, hex));
    }
    free(config);
    free(vocab_json);
    return meta;
}

/* The header JSON padded with spaces to a multiple of 8 bytes, its
 * crc32.header patched in; *len receives the padded length. crcs: the
 * tensors' CRC-32s in file order. */
static char *header_build(const Model *m, const Config *cfg, const uint32_t *vocab, int V,
                          const TrainState *st, int n_sets, const uint32_t *crcs, size_t *len) {
    int n_tensors = n_sets * m->n_views;
    TensorName *names = xmalloc((size_t)n_tensors * sizeof *names);
    for (int k = 0; k < n_tensors; k++)
        snprintf(names[k], sizeof names[k], "%s%s", set_prefix[k / m->n_views],
                 m->views[k % m->n_views].name);
    cJSON *root = json_ok(cJSON_CreateObject());
    cJSON_AddItemToObject(root, "__metadata__",
                          metadata_build(cfg, vocab, V, st, names, crcs, n_tensors));
    uint64_t off = 0;
    for (int set = 0; set < n_sets; set++) {
        for (int i = 0; i < m->n_views; i++) {
            const ParamView *v = &m->views[i];
            cJSON *t = json_ok(cJSON_AddObjectToObject(root, names[set * m->n_views + i]));
            json_ok(cJSON_AddStringToObject(t, "dtype", "F32"));
            cJSON_AddItemToObject(t, "shape", json_ok(cJSON_CreateIntArray(v->shape, v->ndim)));
            double offsets[2] = {(double)off, (double)(off + 4 * (uint64_t)v->numel)};
            cJSON_AddItemToObject(t, "data_offsets", json_ok(cJSON_CreateDoubleArray(offsets, 2)));
            off += 4 * (uint64_t)v->numel;
        }
    }
    char *text = json_ok(cJSON_PrintUnformatted(root));
    cJSON_Delete(root);
    free(names);
    /* Every other string is escaped JSON and every key is fixed by qkscope,
     * so the entry occurs once; the CRC reads its placeholder. */
    static const char entry[] = "\"" CRC_HEADER_KEY "\":\"" CRC_PLACEHOLDER "\"";
    const char *at = strstr(text, entry);
    CHECK(at, "header_build: no crc32.header entry");
    size_t digits = (size_t)(at - text) + sizeof entry - 10;
    size_t n = strlen(text), padded = (n + 7) / 8 * 8;
    char *out = xmalloc(padded);
    memcpy(out, text, n);
    memset(out + n, ' ', padded - n);
    free(text);
    char hex[9];
    snprintf(hex, sizeof hex, "%08" PRIx32, crc_add(0, out, padded));
    memcpy(out + digits, hex, 8);
    *len = padded;
    return out;
}

/* A file being written; the first failure's errno sticks. */
typedef struct {
    FILE *f;
    int errnum;
} Out;

static void out_write(Out *o, const void *p, size_t n) {
    if (o->errnum || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->errnum = errno ? errno : EIO;
}

/* A tensor's bytes as the file holds them: written to o (NULL: only
 * counted), their CRC-32 returned. */
static uint32_t tensor_write(Out *o, const real *x, size_t n) {
    unsigned char buf[4 * CHUNK_FLOATS];
    uint32_t crc = 0;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK_FLOATS ? n - done : CHUNK_FLOATS;
        for (size_t i = 0; i < k; i++) f32_to_le(buf + 4 * i, (float)x[done + i]);
        crc = crc_add(crc, buf, 4 * k);
        if (o) out_write(o, buf, 4 * k);
        done += k;
    }
    return crc;
}

/* Flushes the file to disk and closes it; 0 or an errno. */
static int out_close(Out *o) {
    int e = o->errnum;
    if (!e && fflush(o->f)) e = errno;
    if (!e && fsync(fileno(o->f))) e = errno;
    if (fclose(o->f) && !e) e = errno;
    return e;
}

/* fsync of the folder holding path makes the rename itself durable. */
static int dir_sync(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return errno;
    /* Some file systems cannot sync a folder; the data itself is synced. */
    int e = fsync(fd) && errno != EINVAL ? errno : 0;
    close(fd);
    return e;
}

int checkpoint_save(const char *path, const Model *m, const Config *cfg, const uint32_t *vocab,
                    int V, const TrainState *st, int with_optim, Error *err) {
    ModelShape want = config_model_shape(cfg, V);
    CHECK(memcmp(&want, &m->shape, sizeof want) == 0,
          "checkpoint_save: the model's shape disagrees with its config and vocabulary");
    int n_sets = with_optim ? N_SETS : 1;
    const real *bufs[N_SETS] = {m->params, m->adam_m, m->adam_v};
    /* The header holds the tensors' CRCs and comes first: one pass to
     * compute them, one to write. */
    uint32_t *crcs = xmalloc((size_t)n_sets * m->n_views * sizeof *crcs);
    for (int k = 0; k < n_sets * m->n_views; k++) {
        const ParamView *v = &m->views[k % m->n_views];
        crcs[k] = tensor_write(NULL, bufs[k / m->n_views] + v->offset, v->numel);
    }
    size_t hlen;
    char *header = header_build(m, cfg, vocab, V, st, n_sets, crcs, &hlen);
    free(crcs);

    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    Out o = {fopen(tmp, "wb"), 0};
    if (!o.f) {
        int e = errno;
        free(header);
        return error_set(err, "%s: cannot write checkpoint: %s", path, strerror(e));
    }
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    out_write(&o, len_le, sizeof len_le);
    out_write(&o, header, hlen);
    free(header);
    for (int set = 0; set < n_sets; set++)
        for (int i = 0; i < m->n_views; i++)
            tensor_write(&o, bufs[set] + m->views[i].offset, m->views[i].numel);
    int e = out_close(&o);
    if (!e && rename(tmp, path)) e = errno;
    if (e) {
        unlink(tmp);
        return error_set(err, "%s: cannot write checkpoint: %s", path, strerror(e));
    }
    e = dir_sync(path);
    if (e) return error_set(err, "%s: cannot write checkpoint: %s", path, strerror(e));
    return 0;
}

/* ---- reading ----------------------------------------------------------- */

/* A tensor entry of the header: slot = set * n_views + view index. */
typedef struct {
    int slot;
    const cJSON *json;
} Entry;

typedef struct {
    const char *path;
    Error *err;
    Checkpoint *ck;
    FILE *f;
    uint64_t data_start, data_size; /* data section: file offset and bytes */
    char *header_text;
    cJSON *header;
    ParamView *views;
    int n_views;
    const ParamView **by_name;      /* views sorted by name, for bsearch */
    unsigned char *seen;            /* [N_SETS * n_views] by slot */
    Entry *entries;                 /* tensor entries in header order */
    int n_entries;
    int keep;                       /* store the tensors (0: check them only) */
    int n_crc;                      /* crc32.* metadata keys; 0: unverified */
    int header_crc_found;           /* crc32.header entries in the raw text */
    char header_crc_hex[9];         /* the digits of the one found */
    uint32_t *crc;                  /* [N_SETS * n_views] expected, by slot */
    unsigned char *has_crc;         /* [N_SETS * n_views] */
    int n_verified;                 /* tensors whose CRC matched */
} Reader;

static int fail(const Reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const Reader *r, const char *fmt, ...) {
    char what[900], shown[4 * sizeof what];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* Names and values quoted from the file may hold control characters
     * (JSON escapes such as \n): shown as \xNN, the message stays one line. */
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)what; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            o += (size_t)snprintf(shown + o, sizeof shown - o, "\\x%02x", *p);
        else
            shown[o++] = (char)*p;
    }
    shown[o] = '\0';
    return error_set(r->err, "%s: %s", r->path, shown);
}

/* Opens the file and checks the 8-byte header length against the file size. */
static int file_open(Reader *r, uint64_t *hlen) {
    r->f = fopen(r->path, "rb");
    if (!r->f) return fail(r, "cannot open checkpoint: %s", strerror(errno));
    struct stat sb;
    if (fstat(fileno(r->f), &sb)) return fail(r, "cannot read checkpoint: %s", strerror(errno));
    if (S_ISDIR(sb.st_mode)) return fail(r, "is a directory, expected a safetensors file");
    if (!S_ISREG(sb.st_mode)) return fail(r, "not a regular file, expected a safetensors file");
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char len_le[8];
    if (size < 8)
        return fail(r, "not a safetensors file: %" PRIu64 " bytes, shorter than the 8-byte header "
                       "length", size);
    if (fread(len_le, 1, 8, r->f) != 8)
        return fail(r, "cannot read checkpoint: %s", ferror(r->f) ? strerror(errno) : "truncated");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)len_le[i] << (8 * i);
    if (n > size - 8)
        return fail(r, "not a safetensors file: header length %" PRIu64 " exceeds the %" PRIu64
                       " bytes after it", n, size - 8);
    if (n > HEADER_MAX)
        return fail(r, "header length %" PRIu64 " exceeds the limit of %u bytes", n, HEADER_MAX);
    r->data_start = 8 + n;
    r->data_size = size - 8 - n;
    *hlen = n;
    return 0;
}

static int is_crc_hex(const char *s) {
    for (int i = 0; i < 8; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int json_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Counts the entries "crc32.header" : "<value>" in the raw header text;
 * *at and *len receive the last one's value. */
static int header_crc_locate(const char *text, size_t n, size_t *at, size_t *len) {
    static const char key[] = "\"" CRC_HEADER_KEY "\"";
    int found = 0;
    for (size_t i = 0; i + sizeof key - 1 <= n; i++) {
        if (text[i] != '"' || memcmp(text + i, key, sizeof key - 1)) continue;
        size_t j = i + sizeof key - 1;
        while (j < n && json_space(text[j])) j++;
        if (j >= n || text[j++] != ':') continue;
        while (j < n && json_space(text[j])) j++;
        if (j >= n || text[j++] != '"') continue;
        size_t k = j;
        while (k < n && text[k] != '"') k++;
        found++;
        *at = j;
        *len = k - j;
    }
    return found;
}

/* Checks crc32.header against the raw bytes before they are parsed, so that
 * a flipped bit anywhere in the header, even one that breaks the JSON, is
 * reported as the corruption it is. An entry that is absent, repeated or
 * malformed is judged with the parsed metadata (checksums_meta). */
static int header_crc_check(Reader *r, size_t n) {
    size_t at = 0, len = 0;
    r->header_crc_found = header_crc_locate(r->header_text, n, &at, &len);
    if (r->header_crc_found != 1 || len != 8 || !is_crc_hex(r->header_text + at)) return 0;
    memcpy(r->header_crc_hex, r->header_text + at, 8);
    uint32_t want = (uint32_t)strtoul(r->header_crc_hex, NULL, 16);
    uint32_t got = crc_add(0, r->header_text, at);
    got = crc_add(got, CRC_PLACEHOLDER, 8);
    got = crc_add(got, r->header_text + at + 8, n - at - 8);
    if (got != want)
        return fail(r, "checksum mismatch in the header: expected crc32 %s, found %08" PRIx32
                       " (the file is corrupt)", r->header_crc_hex, got);
    return 0;
}

static int header_parse(Reader *r, size_t n) {
    r->header_text = xmalloc(n + 1);
    if (fread(r->header_text, 1, n, r->f) != n)
        return fail(r, "cannot read checkpoint: %s", ferror(r->f) ? strerror(errno) : "truncated");
    r->header_text[n] = '\0';
    if (header_crc_check(r, n)) return -1;
    const char *end = NULL;
    r->header = cJSON_ParseWithLengthOpts(r->header_text, n, &end, 0);
    if (!r->header)
        return fail(r, "header is not valid JSON (error at byte %zu)",
                    end ? (size_t)(end - r->header_text) : (size_t)0);
    /* Only padding may follow the JSON value. */
    size_t at = (size_t)(end - r->header_text);
    for (size_t i = at; i < n; i++)
        if (!strchr(" \t\r\n", r->header_text[i]) || r->header_text[i] == '\0')
            return fail(r, "header is not valid JSON (unexpected data at byte %zu)", i);
    if (!cJSON_IsObject(r->header)) return fail(r, "header is not a JSON object");
    return 0;
}

/* The crc32.* metadata keys: each a CRC of 8 lowercase hex digits, and, when
 * there are any, crc32.header among them, the entry header_crc_check found.
 * A missing or repeated __metadata__ is left to metadata_parse to name. */
static int checksums_meta(Reader *r) {
    const cJSON *meta = NULL, *item;
    int n_meta = 0, has_header = 0;
    cJSON_ArrayForEach(item, r->header) {
        if (!strcmp(item->string, "__metadata__")) meta = item, n_meta++;
    }
    if (n_meta != 1 || !cJSON_IsObject(meta)) return 0;
    cJSON_ArrayForEach(item, meta) {
        if (strncmp(item->string, CRC_PREFIX, strlen(CRC_PREFIX))) continue;
        r->n_crc++;
        const char *v = cJSON_GetStringValue(item);
        if (!v)
            return fail(r, "metadata '%.200s' is not a string, expected 8 lowercase hex digits "
                           "(a CRC-32)", item->string);
        if (strlen(v) != 8 || !is_crc_hex(v))
            return fail(r, "metadata '%.200s' is '%.64s', expected 8 lowercase hex digits "
                           "(a CRC-32)", item->string, v);
        if (strcmp(item->string, CRC_HEADER_KEY)) continue;
        if (has_header++) return fail(r, "metadata '" CRC_HEADER_KEY "' appears twice");
        if (r->header_crc_found != 1 || strcmp(v, r->header_crc_hex))
            return fail(r, "metadata '" CRC_HEADER_KEY "' is not written once as \"" CRC_HEADER_KEY
                           "\":\"<8 hex digits>\" in the header's text");
    }
    if (r->n_crc && !has_header)
        return fail(r, "metadata has crc32 entries but no '" CRC_HEADER_KEY "'");
    return 0;
}

/* The one string value of a required metadata key (NULL after an error). */
static const char *meta_get(Reader *r, const cJSON *meta, const char *key) {
    const cJSON *found = NULL, *item;
    cJSON_ArrayForEach(item, meta) {
        if (strcmp(item->string, key)) continue;
        if (found) return fail(r, "metadata '%s' appears twice", key), NULL;
        found = item;
    }
    if (!found) return fail(r, "metadata has no '%s'", key), NULL;
    if (!cJSON_IsString(found)) return fail(r, "metadata '%s' is not a string", key), NULL;
    return found->valuestring;
}

/* A decimal integer in [lo, hi], nothing else (no spaces, no '+'). */
static int parse_int(const char *s, long lo, long hi, long *out) {
    if (!(s[0] >= '0' && s[0] <= '9') && !(s[0] == '-' && s[1] >= '0' && s[1] <= '9')) return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* A loss: a finite number >= 0, or "nan" for none. */
static int parse_loss(const char *s, double *out) {
    if (!strcmp(s, "nan")) {
        *out = NAN;
        return 0;
    }
    if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '.')) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* Four words of 16 lowercase hex digits joined by ','; not all zero (a state
 * xoshiro256** cannot leave). */
static int parse_rng(const char *s, Rng *out) {
    const char *hex = "0123456789abcdef";
    uint64_t any = 0;
    for (int i = 0; i < 4; i++) {
        const char *w = s + 17 * i;
        if (strspn(w, hex) != 16 || w[16] != (i < 3 ? ',' : '\0')) return -1;
        out->s[i] = strtoull(w, NULL, 16);
        any |= out->s[i];
    }
    return any ? 0 : -1;
}

static int vocab_parse(Reader *r, const char *text) {
    Checkpoint *ck = r->ck;
    cJSON *arr = cJSON_Parse(text);
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 1 || n > VOCAB_MAX) {
        cJSON_Delete(arr);
        return fail(r, "metadata 'vocab' is not a JSON array of 1 to %d strings", VOCAB_MAX);
    }
    ck->V = n;
    ck->vocab = xmalloc((size_t)n * sizeof *ck->vocab);
    int i = 0, rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, arr) {
        const char *s = cJSON_GetStringValue(item);
        size_t len = s ? strlen(s) : 0, bad;
        uint32_t cp[4] = {0};
        /* "" stands for U+0000 (see the top of this file) */
        if (!s || len > 4 || (len && utf8_decode((const unsigned char *)s, len, cp, &bad) != 1)) {
            rc = fail(r, "metadata 'vocab' entry %d is not a string of one character", i);
            break;
        }
        if (i > 0 && cp[0] <= ck->vocab[i - 1]) {
            rc = fail(r, "metadata 'vocab' is not sorted by code point (entry %d: U+%04X after "
                         "U+%04X)", i, (unsigned)cp[0], (unsigned)ck->vocab[i - 1]);
            break;
        }
        ck->vocab[i++] = cp[0];
    }
    cJSON_Delete(arr);
    return rc;
}

static int metadata_parse(Reader *r) {
    Checkpoint *ck = r->ck;
    const cJSON *meta = NULL, *item;
    cJSON_ArrayForEach(item, r->header) {
        if (strcmp(item->string, "__metadata__")) continue;
        if (meta) return fail(r, "header has __metadata__ twice");
        meta = item;
    }
    if (!meta) return fail(r, "header has no __metadata__ (not a qkscope checkpoint)");
    if (!cJSON_IsObject(meta)) return fail(r, "__metadata__ is not a JSON object");
    const char *v[N_META];
    for (int i = 0; i < N_META; i++)
        if (!(v[i] = meta_get(r, meta, meta_keys[i]))) return -1;

    if (strcmp(v[M_FORMAT], CHECKPOINT_FORMAT))
        return fail(r, "metadata 'format' is '%.64s', expected '%s'", v[M_FORMAT],
                    CHECKPOINT_FORMAT);
    Error cerr;
    if (config_load_string(&ck->cfg, v[M_CONFIG], "config", &cerr))
        return fail(r, "metadata 'config': %s", cerr.msg);
    if (vocab_parse(r, v[M_VOCAB])) return -1;
    ck->shape = config_model_shape(&ck->cfg, ck->V);

    TrainState *st = &ck->state;
    long step, eval_step;
    if (parse_int(v[M_STEP], 0, INT_MAX, &step))
        return fail(r, "metadata 'step' is '%.64s', expected an integer >= 0", v[M_STEP]);
    st->step = (int)step;
    if (parse_rng(v[M_RNG], &st->batch_rng))
        return fail(r, "metadata 'rng' is '%.80s', expected 4 words of 16 lowercase hex digits "
                       "joined by ',', not all zero", v[M_RNG]);
    for (int i = M_TRAIN_LOSS; i <= M_VAL_LOSS; i++)
        if (parse_loss(v[i], i == M_TRAIN_LOSS ? &st->train_loss : &st->val_loss))
            return fail(r, "metadata '%s' is '%.64s', expected a number >= 0 or nan",
                        meta_keys[i], v[i]);
    if (parse_int(v[M_EVAL_STEP], -1, step, &eval_step))
        return fail(r, "metadata 'eval_step' is '%.64s', expected an integer from -1 to step (%ld)",
                    v[M_EVAL_STEP], step);
    st->eval_step = (int)eval_step;
    return 0;
}

static int view_name_cmp(const void *key, const void *elem) {
    return strcmp(key, (*(const ParamView *const *)elem)->name);
}

static int view_sort_cmp(const void *a, const void *b) {
    return strcmp((*(const ParamView *const *)a)->name, (*(const ParamView *const *)b)->name);
}

/* The slot (set * n_views + view) of a tensor name, or -1 when the config has
 * no such tensor. */
static int slot_find(const Reader *r, const char *name) {
    int set = N_SETS - 1;
    while (set > 0 && strncmp(name, set_prefix[set], strlen(set_prefix[set]))) set--;
    const ParamView **v = bsearch(name + strlen(set_prefix[set]), r->by_name, (size_t)r->n_views,
                                  sizeof *r->by_name, view_name_cmp);
    return v ? set * r->n_views + (int)(*v - r->views) : -1;
}

static void shape_format(const ParamView *v, char *out, size_t n) {
    if (v->ndim == 2)
        snprintf(out, n, "[%d,%d]", v->shape[0], v->shape[1]);
    else
        snprintf(out, n, "[%d]", v->shape[0]);
}

static int shape_matches(const cJSON *shape, const ParamView *v) {
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != v->ndim) return 0;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        if (!cJSON_IsNumber(d) || d->valuedouble != v->shape[i++]) return 0;
    }
    return 1;
}

/* An integer JSON number within what a double holds exactly. */
static int json_u64(const cJSON *x, uint64_t *out) {
    if (!cJSON_IsNumber(x)) return -1;
    double d = x->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Checks one tensor entry's name, dtype and shape, and records its slot. */
static int entry_check(Reader *r, const cJSON *e) {
    const char *name = e->string;
    int slot = slot_find(r, name);
    if (slot < 0)
        return fail(r, "unknown tensor '%.200s' (not part of a model with the stored config)",
                    name);
    if (r->seen[slot]) return fail(r, "tensor '%s' appears twice", name);
    r->seen[slot] = 1;
    r->entries[r->n_entries++] = (Entry){slot, e};
    if (!cJSON_IsObject(e)) return fail(r, "tensor '%s': entry is not a JSON object", name);

    const ParamView *v = &r->views[slot % r->n_views];
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dtype) || strcmp(dtype->valuestring, "F32"))
        return fail(r, "tensor '%s': dtype '%.32s', expected 'F32'", name,
                    cJSON_IsString(dtype) ? dtype->valuestring : "(missing)");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!shape_matches(shape, v)) {
        char want[64];
        char *got = shape ? json_ok(cJSON_PrintUnformatted(shape)) : NULL;
        shape_format(v, want, sizeof want);
        fail(r, "tensor '%s': shape %.80s, expected %s for the stored config", name,
             got ? got : "(missing)", want);
        free(got);
        return -1;
    }
    return 0;
}

/* Checks one entry's data_offsets; *pos is where the previous tensor's data
 * ended. */
static int offsets_check(Reader *r, const Entry *en, uint64_t *pos) {
    const char *name = en->json->string;
    const ParamView *v = &r->views[en->slot % r->n_views];
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(en->json, "data_offsets");
    uint64_t b, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_u64(offs->child, &b) ||
        json_u64(offs->child->next, &end))
        return fail(r, "tensor '%s': data_offsets is not [begin, end] with integers >= 0", name);
    if (b > end || end > r->data_size)
        return fail(r, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] out of range (the "
                       "data section has %" PRIu64 " bytes)", name, b, end, r->data_size);
    if (b != *pos)
        return fail(r, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] %s the previous "
                       "tensor, which ends at %" PRIu64, name, b, end,
                    b < *pos ? "overlap" : "leave a gap after", *pos);
    if (end - b != 4 * (uint64_t)v->numel)
        return fail(r, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                       " bytes, expected %zu for its shape", name, b, end, end - b, 4 * v->numel);
    *pos = end;
    return 0;
}

/* Names, dtypes and shapes first (so a missing tensor is named rather than
 * reported as a gap), then the offsets in header order. */
static int tensors_check(Reader *r) {
    Checkpoint *ck = r->ck;
    r->views = model_views(&ck->shape, &r->n_views, &ck->n_params);
    r->by_name = xmalloc((size_t)r->n_views * sizeof *r->by_name);
    for (int i = 0; i < r->n_views; i++) r->by_name[i] = &r->views[i];
    qsort(r->by_name, (size_t)r->n_views, sizeof *r->by_name, view_sort_cmp);
    r->seen = xcalloc((size_t)N_SETS * r->n_views, 1);
    r->entries = xmalloc((size_t)N_SETS * r->n_views * sizeof *r->entries);

    const cJSON *e;
    cJSON_ArrayForEach(e, r->header) {
        if (strcmp(e->string, "__metadata__") && entry_check(r, e)) return -1;
    }
    for (int i = 0; i < r->n_views; i++)
        if (!r->seen[i]) return fail(r, "missing tensor '%s'", r->views[i].name);
    ck->has_optim = r->n_entries > r->n_views;
    for (int i = r->n_views; ck->has_optim && i < N_SETS * r->n_views; i++)
        if (!r->seen[i])
            return fail(r, "optimizer state incomplete: missing tensor '%s%s'",
                        set_prefix[i / r->n_views], r->views[i % r->n_views].name);

    uint64_t pos = 0;
    for (int i = 0; i < r->n_entries; i++)
        if (offsets_check(r, &r->entries[i], &pos)) return -1;
    if (pos != r->data_size)
        return fail(r, "%" PRIu64 " byte%s of data after the last tensor (the data section must "
                       "end with it)", r->data_size - pos, r->data_size - pos == 1 ? "" : "s");
    return 0;
}

/* With checksums, every crc32.<name> names a tensor of the file and every
 * tensor has one; their values go to r->crc by slot. */
static int checksums_match(Reader *r) {
    if (!r->n_crc) return 0;
    size_t n_slots = (size_t)N_SETS * r->n_views, plen = strlen(CRC_PREFIX);
    r->crc = xcalloc(n_slots, sizeof *r->crc);
    r->has_crc = xcalloc(n_slots, 1);
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(r->header, "__metadata__")) {
        const char *key = item->string;
        if (strncmp(key, CRC_PREFIX, plen) || !strcmp(key, CRC_HEADER_KEY)) continue;
        int slot = slot_find(r, key + plen);
        if (slot < 0 || !r->seen[slot])
            return fail(r, "metadata '%.200s' names no tensor of the file", key);
        if (r->has_crc[slot]) return fail(r, "metadata '%.200s' appears twice", key);
        r->has_crc[slot] = 1;
        r->crc[slot] = (uint32_t)strtoul(item->valuestring, NULL, 16);
    }
    for (int i = 0; i < r->n_entries; i++)
        if (!r->has_crc[r->entries[i].slot])
            return fail(r, "tensor '%s' has no checksum (metadata '" CRC_PREFIX "%s'), while "
                           "the file has others", r->entries[i].json->string,
                        r->entries[i].json->string);
    return 0;
}

/* Reads the data section tensor by tensor (storing it when r->keep),
 * checking each tensor's CRC, then refusing non-finite values: a flipped bit
 * that makes a NaN is named as the corruption it is. */
static int tensors_read(Reader *r) {
    Checkpoint *ck = r->ck;
    if (r->keep) ck->params = xmalloc(ck->n_params * sizeof(float));
    if (r->keep && ck->has_optim) {
        ck->adam_m = xmalloc(ck->n_params * sizeof(float));
        ck->adam_v = xmalloc(ck->n_params * sizeof(float));
    }
    float *bufs[N_SETS] = {ck->params, ck->adam_m, ck->adam_v};
    if (fseeko(r->f, (off_t)r->data_start, SEEK_SET))
        return fail(r, "cannot read checkpoint: %s", strerror(errno));
    unsigned char chunk[4 * CHUNK_FLOATS];
    for (int s = 0; s < r->n_entries; s++) {
        int slot = r->entries[s].slot, set = slot / r->n_views;
        const ParamView *v = &r->views[slot % r->n_views];
        float *dst = r->keep ? bufs[set] + v->offset : NULL;
        uint32_t crc = 0;
        size_t bad = v->numel;
        float bad_x = 0;
        for (size_t done = 0; done < v->numel;) {
            size_t k = v->numel - done < CHUNK_FLOATS ? v->numel - done : CHUNK_FLOATS;
            if (fread(chunk, 4, k, r->f) != k)
                return fail(r, "cannot read checkpoint: %s",
                            ferror(r->f) ? strerror(errno) : "file shrank while being read");
            if (r->n_crc) crc = crc_add(crc, chunk, 4 * k);
            for (size_t i = 0; i < k; i++) {
                float x = f32_from_le(chunk + 4 * i);
                if (!isfinite(x) && bad == v->numel) bad = done + i, bad_x = x;
                if (dst) dst[done + i] = x;
            }
            done += k;
        }
        if (r->n_crc && crc != r->crc[slot])
            return fail(r, "checksum mismatch in tensor '%s%s': expected crc32 %08" PRIx32
                           ", found %08" PRIx32 " (the file is corrupt)", set_prefix[set],
                        v->name, r->crc[slot], crc);
        if (bad < v->numel)
            return fail(r, "tensor '%s%s' has a non-finite value (%s) at index %zu",
                        set_prefix[set], v->name, isnan(bad_x) ? "nan" : "inf", bad);
    }
    r->n_verified = r->n_crc ? r->n_entries : 0;
    return 0;
}

static void reader_free(Reader *r) {
    if (r->f) fclose(r->f);
    cJSON_Delete(r->header);
    free(r->header_text);
    free(r->views);
    free(r->by_name);
    free(r->seen);
    free(r->entries);
    free(r->crc);
    free(r->has_crc);
}

/* The whole file, every check; the tensors stored when keep is set. */
static int read_all(Checkpoint *ck, const char *path, int keep, Error *err) {
    memset(ck, 0, sizeof *ck);
    snprintf(ck->path, sizeof ck->path, "%s", path);
    Reader r = {.path = path, .err = err, .ck = ck, .keep = keep};
    uint64_t hlen = 0;
    int rc = file_open(&r, &hlen);
    if (!rc) rc = header_parse(&r, (size_t)hlen);
    if (!rc) rc = checksums_meta(&r);
    if (!rc) rc = metadata_parse(&r);
    if (!rc) rc = tensors_check(&r);
    if (!rc) rc = checksums_match(&r);
    if (!rc) rc = tensors_read(&r);
    ck->n_verified = r.n_verified;
    reader_free(&r);
    if (rc) checkpoint_free(ck);
    return rc;
}

int checkpoint_read(Checkpoint *ck, const char *path, Error *err) {
    return read_all(ck, path, 1, err);
}

int checkpoint_verify(const char *path, int *n_verified, Error *err) {
    Checkpoint ck;
    int rc = read_all(&ck, path, 0, err);
    *n_verified = ck.n_verified;
    checkpoint_free(&ck);
    return rc;
}

int checkpoint_verify_header(const char *path, int *verified, Error *err) {
    Checkpoint ck;
    memset(&ck, 0, sizeof ck);
    Reader r = {.path = path, .err = err, .ck = &ck};
    uint64_t hlen = 0;
    int rc = file_open(&r, &hlen);
    if (!rc) rc = header_parse(&r, (size_t)hlen);
    if (!rc) rc = checksums_meta(&r);
    *verified = !rc && r.n_crc > 0;
    reader_free(&r);
    return rc;
}

void checkpoint_to_model(const Checkpoint *ck, Model *m, int want_optim) {
    CHECK(memcmp(&ck->shape, &m->shape, sizeof ck->shape) == 0,
          "checkpoint_to_model: the model was not created with the checkpoint's shape");
    for (size_t i = 0; i < ck->n_params; i++) m->params[i] = (real)ck->params[i];
    if (!want_optim || !ck->has_optim) return;
    for (size_t i = 0; i < ck->n_params; i++) {
        m->adam_m[i] = (real)ck->adam_m[i];
        m->adam_v[i] = (real)ck->adam_v[i];
    }
}

void checkpoint_free(Checkpoint *ck) {
    free(ck->vocab);
    free(ck->params);
    free(ck->adam_m);
    free(ck->adam_v);
    memset(ck, 0, sizeof *ck);
}

int checkpoint_check_compatible(const Checkpoint *ck, const Config *c, const Corpus *corpus,
                                Error *err) {
    const Config *k = &ck->cfg;
    const struct {
        const char *key;
        int ckpt, now;
    } keys[] = {
        {"n_layer", k->n_layer, c->n_layer}, {"n_head", k->n_head, c->n_head},
        {"n_embd", k->n_embd, c->n_embd}, {"block_size", k->block_size, c->block_size},
        {"bias", k->bias, c->bias}, {"tie_embeddings", k->tie_embeddings, c->tie_embeddings},
        {"qk", (int)k->qk, (int)c->qk}, {"smear", k->smear, c->smear},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].ckpt != keys[i].now)
            return error_set(err, "%s: model shape differs from the config: [model] %s is %d in "
                                  "the checkpoint, %d in the config",
                             ck->path, keys[i].key, keys[i].ckpt, keys[i].now);
    if (ck->V != corpus->V ||
        memcmp(ck->vocab, corpus->vocab, (size_t)ck->V * sizeof(uint32_t)) != 0)
        return error_set(err, "%s: vocabulary (%d characters) differs from that of %s (%d characters)",
                         ck->path, ck->V, c->task.kind ? task_name(c->task.kind) : c->data_path,
                         corpus->V);
    return 0;
}
