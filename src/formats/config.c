/* Run configuration. One table describes every key; defaults, parsing,
 * per-key validation, writing and "did you mean" suggestions all walk it,
 * so adding a key is one table row plus its Config field. */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { KEY_INT, KEY_U64, KEY_DOUBLE, KEY_BOOL, KEY_STRING, KEY_ENUM } KeyType;

enum {
    MIN_OPEN = 1u << 0, /* the lower bound itself is not allowed */
    MAX_OPEN = 1u << 1, /* the upper bound itself is not allowed */
    NONEMPTY = 1u << 2, /* string must not be empty */
    FOLDER = 1u << 3,   /* string becomes one path component */
    EMPTY_FIRST = 1u << 4, /* KEY_ENUM: an empty value means the first name */
};

typedef struct {
    const char *section, *key;
    KeyType type;
    size_t offset, size;      /* of the Config field */
    double min, max;          /* KEY_INT, KEY_DOUBLE */
    unsigned flags;
    const char *const *names; /* KEY_ENUM: NULL-terminated, index = value */
    const char *def;          /* default, parsed exactly like a file value */
    const char *doc;
    TaskKind owner;           /* a [task] key: the task it belongs to */
} KeyDesc;

static const char *const qk_names[] = {"untied", "tied", NULL};
static const char *const qk_init_names[] = {"independent", "symmetric", NULL};
static const char *const task_names[] = {"none", "kv", "repeat", NULL};
static const char *const smear_names[] = {"none", "key", "query", NULL};
static const char *const init_names[] = {"gpt2", "torch", NULL};

/* Enum fields are stored through an int pointer like the other integers. */
_Static_assert(sizeof(QkMode) == sizeof(int) && sizeof(QkInit) == sizeof(int) &&
                   sizeof(InitScheme) == sizeof(int) && sizeof(TaskKind) == sizeof(int),
               "enum fields must be int-sized");

#define KEY(sec, name, ty, field)                                                      \
    .section = sec, .key = name, .type = ty, .offset = offsetof(Config, field),       \
    .size = sizeof(((Config *)0)->field)

/* Grouped by section: config_write and the section list rely on that order. */
static const KeyDesc keys[] = {
    {KEY("run", "name", KEY_STRING, name), .flags = NONEMPTY | FOLDER, .def = "run",
     .doc = "run folder under out_dir (default: config file name without extension)"},
    {KEY("run", "out_dir", KEY_STRING, out_dir), .flags = NONEMPTY, .def = "runs",
     .doc = "parent folder of run folders"},
    {KEY("run", "seed", KEY_U64, seed), .def = "1337", .doc = "PRNG seed"},
    {KEY("run", "threads", KEY_INT, threads), .min = 0, .max = 1024, .def = "0",
     .doc = "OpenMP threads, 0 = OpenMP default"},
    {KEY("run", "overwrite", KEY_BOOL, overwrite), .def = "false",
     .doc = "replace an existing run folder"},
    {KEY("run", "resume", KEY_BOOL, resume), .def = "false",
     .doc = "continue from the run's latest checkpoint"},

    {KEY("data", "path", KEY_STRING, data_path), .def = "data/fortunes.txt",
     .doc = "UTF-8 text corpus (empty with a task)"},
    {KEY("data", "val_fraction", KEY_DOUBLE, val_fraction), .min = 0, .max = 1,
     .flags = MIN_OPEN | MAX_OPEN, .def = "0.1",
     .doc = "last fraction of the characters held out for validation"},
    {KEY("data", "repeat_fraction", KEY_DOUBLE, repeat_fraction), .min = 0, .max = 1, .def = "0",
     .doc = "corpus runs: fraction of the training windows in which a segment of their text is "
     "followed by its copy (an experiment's knob: repetition speeds up induction heads), 0 = off"},
    {KEY("data", "task", KEY_ENUM, task.kind), .names = task_names, .flags = EMPTY_FIRST,
     .def = "none", .doc = "kv or repeat: generated records instead of the corpus; none (or "
     "empty): the corpus at path"},

    /* Only the keys of the task in [data] task may be set, and only they are
     * written: config.ini shows the parameters that made the records. */
    {KEY("task", "keys", KEY_INT, task.keys), .min = 1, .max = 26, .def = "12",
     .owner = TASK_KV, .doc = "kv: key alphabet, the first `keys` letters"},
    {KEY("task", "pairs_min", KEY_INT, task.pairs_min), .min = 1, .max = 26, .def = "4",
     .owner = TASK_KV, .doc = "kv: fewest defined keys in a record"},
    {KEY("task", "pairs_max", KEY_INT, task.pairs_max), .min = 1, .max = 26, .def = "6",
     .owner = TASK_KV, .doc = "kv: most defined keys in a record (<= keys)"},
    {KEY("task", "queries", KEY_INT, task.queries), .min = 1, .max = TASK_QUERIES_MAX,
     .def = "8", .owner = TASK_KV, .doc = "kv: queried keys in a record"},
    {KEY("task", "cross", KEY_BOOL, task.cross), .def = "false", .owner = TASK_KV,
     .doc = "kv: definitions in uppercase, queries in lowercase"},
    {KEY("task", "letters", KEY_INT, task.letters), .min = 1, .max = 26, .def = "26",
     .owner = TASK_REPEAT, .doc = "repeat: alphabet, the first `letters` lowercase letters"},
    {KEY("task", "len_min", KEY_INT, task.len_min), .min = 2, .max = TASK_LEN_MAX, .def = "6",
     .owner = TASK_REPEAT, .doc = "repeat: shortest string"},
    {KEY("task", "len_max", KEY_INT, task.len_max), .min = 2, .max = TASK_LEN_MAX, .def = "14",
     .owner = TASK_REPEAT, .doc = "repeat: longest string"},

    /* Size bounds keep every buffer size (the largest, attention weights
     * L*B*NH*T*T, at most 2^60 elements) within size_t before the memory
     * check refuses what does not fit. */
    {KEY("model", "n_layer", KEY_INT, n_layer), .min = 1, .max = 256, .def = "4",
     .doc = "transformer blocks"},
    {KEY("model", "n_head", KEY_INT, n_head), .min = 1, .max = 1024, .def = "4",
     .doc = "attention heads per block; must divide n_embd"},
    {KEY("model", "n_embd", KEY_INT, n_embd), .min = 1, .max = 65536, .def = "128",
     .doc = "channels"},
    {KEY("model", "block_size", KEY_INT, block_size), .min = 2, .max = 16384, .def = "64",
     .doc = "context length in characters"},
    {KEY("model", "bias", KEY_BOOL, bias), .def = "false",
     .doc = "biases on q, k, v, o, fc and proj"},
    {KEY("model", "tie_embeddings", KEY_BOOL, tie_embeddings), .def = "true",
     .doc = "lm_head shares the token embedding"},
    {KEY("model", "qk", KEY_ENUM, qk), .names = qk_names, .def = "untied",
     .doc = "untied: separate W_Q and W_K; tied: W_K is W_Q"},
    {KEY("model", "qk_init", KEY_ENUM, qk_init), .names = qk_init_names,
     .def = "independent", .doc = "symmetric: W_K starts equal to W_Q (needs qk = untied)"},
    {KEY("model", "init", KEY_ENUM, init), .names = init_names, .def = "gpt2",
     .doc = "gpt2: matrices N(0, 0.02), attn.o and mlp.proj N(0, 0.02/sqrt(2 n_layer)), biases 0; "
     "torch: PyTorch's defaults, wte and wpe N(0, 1), linear weights and biases "
     "U(-1/sqrt(fan_in), 1/sqrt(fan_in))"},
    {KEY("model", "smear", KEY_ENUM, smear), .names = smear_names, .def = "none",
     .doc = "key or query: that side mixes in the previous position's vector, one learned "
     "gate per head (Olsson et al. 2022's smeared keys)"},

    {KEY("train", "batch_size", KEY_INT, batch_size), .min = 1, .max = 16384, .def = "12",
     .doc = "sequences per step"},
    {KEY("train", "steps", KEY_INT, steps), .min = 1, .max = 1e9, .def = "2000",
     .doc = "optimizer steps"},
    {KEY("train", "lr", KEY_DOUBLE, lr), .min = 0, .max = INFINITY, .flags = MIN_OPEN,
     .def = "1e-3", .doc = "peak learning rate"},
    {KEY("train", "min_lr", KEY_DOUBLE, min_lr), .min = 0, .max = INFINITY, .def = "1e-4",
     .doc = "learning rate at the end of the cosine decay (<= lr)"},
    {KEY("train", "warmup_steps", KEY_INT, warmup_steps), .min = 0, .max = 1e9,
     .def = "100", .doc = "linear warmup steps (<= steps)"},
    {KEY("train", "weight_decay", KEY_DOUBLE, weight_decay), .min = 0, .max = INFINITY,
     .def = "0.1", .doc = "AdamW decoupled weight decay"},
    {KEY("train", "beta1", KEY_DOUBLE, beta1), .min = 0, .max = 1, .flags = MAX_OPEN,
     .def = "0.9", .doc = "AdamW first moment decay"},
    {KEY("train", "beta2", KEY_DOUBLE, beta2), .min = 0, .max = 1, .flags = MAX_OPEN,
     .def = "0.99", .doc = "AdamW second moment decay"},
    {KEY("train", "grad_clip", KEY_DOUBLE, grad_clip), .min = 0, .max = INFINITY,
     .def = "1.0", .doc = "global gradient norm clip, 0 = off"},
    {KEY("train", "eval_every", KEY_INT, eval_every), .min = 1, .max = 1e9, .def = "250",
     .doc = "steps between evaluations"},
    {KEY("train", "eval_batches", KEY_INT, eval_batches), .min = 1, .max = 1e6, .def = "20",
     .doc = "batches per evaluation"},
    {KEY("train", "log_every", KEY_INT, log_every), .min = 1, .max = 1e9, .def = "10",
     .doc = "steps between log lines"},
    {KEY("train", "stop_after", KEY_INT, stop_after), .min = 0, .max = 1e9, .def = "0",
     .doc = "stop after this step as if interrupted, 0 = run to steps"},
    {KEY("train", "stop_at_acc", KEY_DOUBLE, stop_at_acc), .min = 0, .max = 1, .def = "0",
     .doc = "end the run once val_acc has reached this at two evals in a row, 0 = off"},
    {KEY("train", "init_from", KEY_STRING, init_from), .def = "",
     .doc = "checkpoint to start from, empty = random init"},

    {KEY("log", "probe", KEY_STRING, probe), .def = "",
     .doc = "probe text, empty = a fixed validation window"},
    {KEY("log", "heatmap_every", KEY_INT, heatmap_every), .min = 0, .max = 1e9,
     .def = "250", .doc = "steps between attention heatmaps, 0 = off"},
    {KEY("log", "checkpoint_every", KEY_INT, checkpoint_every), .min = 0, .max = 1e9,
     .def = "500", .doc = "steps between checkpoints, 0 = only at the end"},
    {KEY("log", "keep_checkpoints", KEY_INT, keep_checkpoints), .min = 1, .max = 1e6,
     .def = "3", .doc = "periodic checkpoints kept on disk"},
    {KEY("log", "swap_batches", KEY_INT, swap_batches), .min = 0, .max = 1e6, .def = "2",
     .doc = "validation batches for the Q/K analysis at each eval (qk_eval.csv), 0 = off"},
    {KEY("log", "roles_records", KEY_INT, roles_records), .min = 0, .max = 1e6, .def = "32",
     .doc = "records (task runs) or repeated validation segments (corpus runs) of the roles "
     "measures at each eval (roles_eval.csv), 0 = off"},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* A config is a page of text; this stops e.g. /dev/zero being read forever. */
#define FILE_MAX_BYTES (1u << 20)
/* Values quoted in messages are cut to this many bytes. */
#define EXCERPT_BYTES 60

/* A parsed or stored value, before it is range-checked. */
typedef struct {
    long long i; /* KEY_INT, KEY_BOOL, KEY_ENUM */
    uint64_t u;
    double d;
    const char *s; /* KEY_STRING, s[0 .. len-1], not necessarily terminated */
    size_t len;
} Value;

/* ---- small text helpers ---- */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid:
 * overlongs, surrogates and code points above U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (len == 0 || s[0] > 0xF4 || len > n) return 0;
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Copies at most EXCERPT_BYTES of s (cut on a character boundary) for a
 * message, so a 4 KB value does not swallow the rest of the line; control
 * bytes become \xNN so the message stays one line. out holds EXCERPT_SIZE. */
#define EXCERPT_SIZE (4 * EXCERPT_BYTES + 4)
static void excerpt(const char *s, size_t len, char *out) {
    size_t cut = len;
    if (len > EXCERPT_BYTES) {
        cut = EXCERPT_BYTES;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80) cut--;
    }
    size_t o = 0;
    for (size_t i = 0; i < cut; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7F)
            o += (size_t)snprintf(out + o, EXCERPT_SIZE - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    snprintf(out + o, EXCERPT_SIZE - o, "%s", cut < len ? "..." : "");
}

static int is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Trims s in place and returns the first non-space character. */
static char *trim(char *s) {
    while (is_space(*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1])) s[--n] = '\0';
    return s;
}

/* Shortest %g form that reads back as the same double, for messages. */
static void format_double(double x, char *out, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, x);
        if (strtod(out, NULL) == x) return;
    }
}

/* ---- table lookups and suggestions ---- */

static const KeyDesc *key_find(const char *section, const char *key) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key)) return &keys[i];
    return NULL;
}

static const KeyDesc *key_at(size_t offset) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].offset == offset) return &keys[i];
    die("no config key at offset %zu", offset);
}

/* Distinct section names in table order. */
static size_t sections_list(const char **out) {
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++)
        if (n == 0 || strcmp(out[n - 1], keys[i].section)) out[n++] = keys[i].section;
    return n;
}

/* The table's own copy of a section name, NULL if there is no such section. */
static const char *section_find(const char *section) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section)) return keys[i].section;
    return NULL;
}

/* Edit distance with adjacent transpositions counting as one edit (so
 * "modle" is one step from "model"). */
static size_t edit_distance(const char *a, const char *b) {
    enum { W = 64 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= W || m >= W) return (size_t)-1;
    size_t d[W][W];
    for (size_t i = 0; i <= n; i++) d[i][0] = i;
    for (size_t j = 0; j <= m; j++) d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/* The candidate nearest to typed, or NULL when none is close enough to be a
 * plausible typo (at most 3 edits and at most half of the candidate). */
static const char *nearest(const char *typed, const char **cands, size_t n) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(typed, cands[i]);
        if (d < best_d) best_d = d, best = cands[i];
    }
    if (!best || best_d > 3 || 2 * best_d > strlen(best)) return NULL;
    return best;
}

/* "a, b, c" with each name wrapped in open/close. */
static void join(const char **names, size_t n, const char *open, const char *close,
                 char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(out + used, size - used, "%s%s%s%s", i ? ", " : "", open, names[i],
                         close);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static int unknown_section(const char *where, const char *section, Error *err) {
    const char *names[N_KEYS];
    size_t n = sections_list(names);
    char shown[EXCERPT_SIZE];
    excerpt(section, strlen(section), shown);
    const char *near = nearest(section, names, n);
    if (near) return error_set(err, "%s: unknown section [%s] (did you mean [%s]?)", where, shown, near);
    char list[256];
    join(names, n, "[", "]", list, sizeof list);
    return error_set(err, "%s: unknown section [%s] (valid sections: %s)", where, shown, list);
}

static int unknown_key(const char *where, const char *section, const char *key, Error *err) {
    char shown[EXCERPT_SIZE];
    excerpt(key, strlen(key), shown);
    /* The right key in the wrong section is the likeliest slip of all. */
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].key, key))
            return error_set(err, "%s: unknown key '%s' in [%s] (did you mean [%s] %s?)", where,
                             shown, section, keys[i].section, keys[i].key);
    const char *names[N_KEYS];
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section)) names[n++] = keys[i].key;
    const char *near = nearest(key, names, n);
    if (near)
        return error_set(err, "%s: unknown key '%s' in [%s] (did you mean '%s'?)", where, shown,
                         section, near);
    char list[512];
    join(names, n, "", "", list, sizeof list);
    return error_set(err, "%s: unknown key '%s' in [%s] (valid keys: %s)", where, shown, section,
                     list);
}

/* ---- values: text -> Value -> range check -> field ---- */

static size_t enum_count(const KeyDesc *k) {
    size_t n = 0;
    while (k->names[n]) n++;
    return n;
}

/* What a key accepts, e.g. "expected an integer >= 1 and <= 256". */
static void key_expect(const KeyDesc *k, char *out, size_t n) {
    switch (k->type) {
    case KEY_INT:
        snprintf(out, n, "expected an integer >= %lld and <= %lld", (long long)k->min, (long long)k->max);
        break;
    case KEY_U64:
        snprintf(out, n, "expected an integer >= 0 and <= %llu", (unsigned long long)UINT64_MAX);
        break;
    case KEY_DOUBLE: {
        char lo[32], hi[32];
        format_double(k->min, lo, sizeof lo);
        format_double(k->max, hi, sizeof hi);
        int has_lo = isfinite(k->min), has_hi = isfinite(k->max);
        snprintf(out, n, "expected a number%s%s%s%s%s", has_lo ? (k->flags & MIN_OPEN ? " > " : " >= ") : "",
                 has_lo ? lo : "", has_lo && has_hi ? " and" : "",
                 has_hi ? (k->flags & MAX_OPEN ? " < " : " <= ") : "", has_hi ? hi : "");
        break;
    }
    case KEY_BOOL:
        snprintf(out, n, "expected true or false (or yes/no, on/off, 1/0)");
        break;
    case KEY_ENUM: {
        char list[256];
        join((const char **)k->names, enum_count(k), "", "", list, sizeof list);
        snprintf(out, n, "expected one of %s", list);
        break;
    }
    case KEY_STRING:
        snprintf(out, n, "expected text of at most %zu bytes", k->size - 1);
        break;
    }
}

/* Converts trimmed text to a Value; -1 when it is not of the key's type. */
static int value_parse(const KeyDesc *k, char *text, Value *v) {
    char *end;
    errno = 0;
    switch (k->type) {
    case KEY_INT:
        v->i = strtoll(text, &end, 10);
        return end == text || *end || errno ? -1 : 0;
    case KEY_U64:
        if (text[0] == '-') return -1; /* strtoull would wrap it around */
        v->u = strtoull(text, &end, 10);
        return end == text || *end || errno ? -1 : 0;
    case KEY_DOUBLE:
        /* errno is not consulted: underflow to a denormal sets ERANGE but is
         * a faithful value, and overflow (inf) fails value_check. */
        v->d = strtod(text, &end);
        return end == text || *end ? -1 : 0;
    case KEY_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        for (size_t i = 0; i < 4; i++) {
            if (!strcasecmp(text, yes[i])) return v->i = 1, 0;
            if (!strcasecmp(text, no[i])) return v->i = 0, 0;
        }
        return -1;
    }
    case KEY_ENUM:
        if ((k->flags & EMPTY_FIRST) && !text[0]) return v->i = 0, 0;
        for (long long i = 0; k->names[i]; i++)
            if (!strcasecmp(text, k->names[i])) return v->i = i, 0;
        return -1;
    case KEY_STRING: {
        size_t len = strlen(text);
        if (len >= 2 && text[0] == '"' && text[len - 1] == '"') text++, len -= 2;
        v->s = text;
        v->len = len;
        return 0;
    }
    }
    return -1;
}

/* Checks v against the key's rules; on failure writes what is allowed. */
static int value_check(const KeyDesc *k, const Value *v, char *why, size_t n) {
    int ok = 1;
    switch (k->type) {
    case KEY_INT:
        ok = v->i >= (long long)k->min && v->i <= (long long)k->max; /* bounds are exact */
        break;
    case KEY_DOUBLE:
        ok = isfinite(v->d) && (k->flags & MIN_OPEN ? v->d > k->min : v->d >= k->min) &&
             (k->flags & MAX_OPEN ? v->d < k->max : v->d <= k->max);
        break;
    case KEY_BOOL:
        ok = v->i == 0 || v->i == 1;
        break;
    case KEY_ENUM:
        ok = v->i >= 0 && v->i < (long long)enum_count(k);
        break;
    case KEY_U64:
        break;
    case KEY_STRING: {
        /* Control characters (newlines above all) would break the INI text
         * that config_write produces, so they are refused up front. */
        const unsigned char *s = (const unsigned char *)v->s;
        if (v->len > k->size - 1) {
            snprintf(why, n, "expected at most %zu bytes (got %zu)", k->size - 1, v->len);
            return -1;
        }
        for (size_t i = 0; i < v->len;) {
            size_t w = utf8_len(s + i, v->len - i);
            if (w == 0) return snprintf(why, n, "expected UTF-8 text"), -1;
            if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7F)
                return snprintf(why, n, "expected text without control characters"), -1;
            i += w;
        }
        if ((k->flags & NONEMPTY) && v->len == 0)
            return snprintf(why, n, "expected a non-empty value"), -1;
        if ((k->flags & FOLDER) && (memchr(v->s, '/', v->len) || (v->len == 1 && s[0] == '.') ||
                                    (v->len == 2 && s[0] == '.' && s[1] == '.')))
            return snprintf(why, n, "expected a folder name (no '/', not '.' or '..')"), -1;
        return 0;
    }
    }
    if (ok) return 0;
    key_expect(k, why, n);
    return -1;
}

static void value_store(Config *c, const KeyDesc *k, const Value *v) {
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case KEY_INT:
    case KEY_BOOL:
    case KEY_ENUM:
        *(int *)field = (int)v->i;
        break;
    case KEY_U64:
        *(uint64_t *)field = v->u;
        break;
    case KEY_DOUBLE:
        *(double *)field = v->d;
        break;
    case KEY_STRING:
        /* Zero the whole field so equal configs compare equal bytewise. */
        memset(field, 0, k->size);
        memcpy(field, v->s, v->len);
        break;
    }
}

static Value value_load(const Config *c, const KeyDesc *k) {
    const char *field = (const char *)c + k->offset;
    Value v = {0};
    switch (k->type) {
    case KEY_INT:
    case KEY_BOOL:
    case KEY_ENUM:
        v.i = *(const int *)field;
        break;
    case KEY_U64:
        v.u = *(const uint64_t *)field;
        break;
    case KEY_DOUBLE:
        v.d = *(const double *)field;
        break;
    case KEY_STRING: {
        const char *nul = memchr(field, '\0', k->size);
        v.s = field;
        v.len = nul ? (size_t)(nul - field) : k->size; /* unterminated fails the check */
        break;
    }
    }
    return v;
}

/* Writes the value as INI text (strings without quotes). */
static void value_format(const KeyDesc *k, const Value *v, char *out, size_t n) {
    switch (k->type) {
    case KEY_INT:
        snprintf(out, n, "%lld", v->i);
        break;
    case KEY_U64:
        snprintf(out, n, "%llu", (unsigned long long)v->u);
        break;
    case KEY_DOUBLE:
        snprintf(out, n, "%.17g", v->d);
        break;
    case KEY_BOOL:
        snprintf(out, n, "%s", v->i ? "true" : "false");
        break;
    case KEY_ENUM:
        snprintf(out, n, "%s", v->i >= 0 && v->i < (long long)enum_count(k) ? k->names[v->i] : "?");
        break;
    case KEY_STRING:
        snprintf(out, n, "%.*s", (int)v->len, v->s);
        break;
    }
}

static int value_error(const char *where, const KeyDesc *k, const char *text, size_t len,
                       const char *why, Error *err) {
    char shown[EXCERPT_SIZE];
    excerpt(text, len, shown);
    return error_set(err, "%s: [%s] %s = '%s': %s", where, k->section, k->key, shown, why);
}

/* Parses, checks and stores one value given as text. */
static int key_set(Config *c, const KeyDesc *k, const char *text, const char *where, Error *err) {
    size_t len = strlen(text);
    char *copy = xmalloc(len + 1);
    memcpy(copy, text, len + 1);
    char *t = trim(copy);
    Value v;
    char why[320];
    int rc = value_parse(k, t, &v);
    if (rc)
        key_expect(k, why, sizeof why);
    else
        rc = value_check(k, &v, why, sizeof why);
    if (rc)
        value_error(where, k, t, strlen(t), why, err);
    else
        value_store(c, k, &v);
    free(copy);
    return rc;
}

/* ---- public: defaults, set, validate, write ---- */

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        Error err;
        if (key_set(c, &keys[i], keys[i].def, "default", &err)) die("%s", err.msg);
    }
}

static int lookup(const char *section, const char *key, const char *where, const KeyDesc **k,
                  Error *err) {
    if (!section_find(section)) return unknown_section(where, section, err);
    *k = key_find(section, key);
    return *k ? 0 : unknown_key(where, section, key, err);
}

int config_set(Config *c, const char *section, const char *key, const char *value,
               const char *where, Error *err) {
    const KeyDesc *k;
    if (lookup(section, key, where, &k, err)) return -1;
    return key_set(c, k, value, where, err);
}

/* Where each key's current value came from, for cross-key messages and
 * duplicate detection. order 0 = still the default. */
typedef struct {
    int line;             /* file line, 0 if not from the file */
    const char *override; /* the override text, NULL if not from an override */
    unsigned order;       /* increases with every assignment */
} Origin;

static void origin_where(const Origin *o, const char *name, char *out, size_t n) {
    if (o->override) {
        char shown[EXCERPT_SIZE];
        excerpt(o->override, strlen(o->override), shown);
        snprintf(out, n, "override '%s'", shown);
    } else if (o->line) {
        snprintf(out, n, "%s:%d", name, o->line);
    } else {
        snprintf(out, n, "%s", name);
    }
}

#define KEY_OF(field) key_at(offsetof(Config, field))

/* A cross-key failure between keys a and b, reported at whichever of the
 * two was assigned last (origins NULL: always at fallback). */
static int cross_error(const Origin *origins, const char *fallback, Error *err,
                       const KeyDesc *a, const KeyDesc *b, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static int cross_error(const Origin *origins, const char *fallback, Error *err,
                       const KeyDesc *a, const KeyDesc *b, const char *fmt, ...) {
    char where[512], what[512];
    Origin none = {0};
    const Origin *o = &none;
    if (origins) {
        const Origin *oa = &origins[a - keys], *ob = &origins[b - keys];
        o = oa->order > ob->order ? oa : ob;
    }
    origin_where(o, fallback, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return error_set(err, "%s: %s", where, what);
}

/* The corpus or the task: exactly one of them, the task's keys only with
 * their task, parameters that make records, and records that fit. */
static int validate_data(const Config *c, const Origin *origins, const char *where, Error *err) {
    const TaskSpec *t = &c->task;
    const KeyDesc *kind = KEY_OF(task.kind), *path = KEY_OF(data_path);
    if (t->kind == TASK_NONE && !c->data_path[0])
        return cross_error(origins, where, err, path, path,
                           "[data] path is empty: expected a corpus file (or set [data] task)");
    if (t->kind != TASK_NONE && c->data_path[0])
        return cross_error(origins, where, err, path, kind,
                           "[data] path = '%s' given together with [data] task = %s: a task "
                           "generates its records; remove one of the two",
                           c->data_path, task_name(t->kind));
    /* a task's records are generated whole: there is no text to repeat */
    if (t->kind != TASK_NONE && c->repeat_fraction > 0) {
        char f[32];
        format_double(c->repeat_fraction, f, sizeof f);
        return cross_error(origins, where, err, KEY_OF(repeat_fraction), kind,
                           "[data] repeat_fraction = %s applies to corpus runs only, and [data] "
                           "task is %s; set it to 0 or remove it", f, task_name(t->kind));
    }
    for (size_t i = 0; origins && i < N_KEYS; i++)
        if (keys[i].owner != TASK_NONE && origins[i].order && keys[i].owner != t->kind) {
            char at[512];
            origin_where(&origins[i], where, at, sizeof at);
            return error_set(err, "%s: [task] %s is a parameter of task %s, but [data] task is %s",
                             at, keys[i].key, task_name(keys[i].owner), task_name(t->kind));
        }
    if (t->kind == TASK_KV) {
        if (t->pairs_min > t->pairs_max)
            return cross_error(origins, where, err, KEY_OF(task.pairs_min), KEY_OF(task.pairs_max),
                               "[task] pairs_min (%d) must be <= pairs_max (%d)", t->pairs_min,
                               t->pairs_max);
        if (t->pairs_max > t->keys)
            return cross_error(origins, where, err, KEY_OF(task.pairs_max), KEY_OF(task.keys),
                               "[task] pairs_max (%d) must be <= keys (%d): a record's keys "
                               "are distinct", t->pairs_max, t->keys);
    }
    if (t->kind == TASK_REPEAT && t->len_min > t->len_max)
        return cross_error(origins, where, err, KEY_OF(task.len_min), KEY_OF(task.len_max),
                           "[task] len_min (%d) must be <= len_max (%d)", t->len_min, t->len_max);
    if (t->kind != TASK_NONE && task_record_max(t) > c->block_size + 1)
        return cross_error(origins, where, err, KEY_OF(block_size), kind,
                           "[model] block_size = %d is too short for task %s: its longest "
                           "record has %d characters, which needs block_size >= %d",
                           c->block_size, task_name(t->kind), task_record_max(t),
                           task_record_max(t) - 1);
    return 0;
}

static int validate(const Config *c, const Origin *origins, const char *where, Error *err) {
    /* Per-key rules first: a hand-edited Config may hold anything, and the
     * cross checks below divide by n_head. */
    for (size_t i = 0; i < N_KEYS; i++) {
        Value v = value_load(c, &keys[i]);
        char why[320], text[CONFIG_STR + 32];
        if (value_check(&keys[i], &v, why, sizeof why) == 0) continue;
        value_format(&keys[i], &v, text, sizeof text);
        return value_error(where, &keys[i], text, strlen(text), why, err);
    }
    char a[32], b[32];
    if (c->n_embd % c->n_head)
        return cross_error(origins, where, err, KEY_OF(n_embd), KEY_OF(n_head),
                           "n_embd (%d) is not divisible by n_head (%d)", c->n_embd, c->n_head);
    if (c->min_lr > c->lr) {
        format_double(c->min_lr, a, sizeof a);
        format_double(c->lr, b, sizeof b);
        return cross_error(origins, where, err, KEY_OF(min_lr), KEY_OF(lr),
                           "min_lr (%s) must be <= lr (%s)", a, b);
    }
    if (c->warmup_steps > c->steps)
        return cross_error(origins, where, err, KEY_OF(warmup_steps), KEY_OF(steps),
                           "warmup_steps (%d) must be <= steps (%d)", c->warmup_steps, c->steps);
    if (c->stop_after > c->steps)
        return cross_error(origins, where, err, KEY_OF(stop_after), KEY_OF(steps),
                           "stop_after (%d) must be <= steps (%d)", c->stop_after, c->steps);
    if (validate_data(c, origins, where, err)) return -1;
    if (c->qk_init == QK_INIT_SYMMETRIC && c->qk != QK_UNTIED)
        return cross_error(origins, where, err, KEY_OF(qk_init), KEY_OF(qk),
                           "qk_init = %s requires qk = %s (qk is %s)",
                           config_qk_init_name(c->qk_init), config_qk_name(QK_UNTIED),
                           config_qk_name(c->qk));
    return 0;
}

int config_validate(const Config *c, const char *where, Error *err) {
    return validate(c, NULL, where, err);
}

void config_write(const Config *c, FILE *f) {
    char text[CONFIG_STR + 32];
    const char *section = NULL; /* of the last key written */
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyDesc *k = &keys[i];
        if (k->owner != TASK_NONE && k->owner != c->task.kind) continue;
        if (!section || strcmp(section, k->section))
            fprintf(f, "%s[%s]\n", section ? "\n" : "", k->section);
        section = k->section;
        Value v = value_load(c, k);
        value_format(k, &v, text, sizeof text);
        /* Strings are always quoted so leading/trailing spaces and quotes
         * survive the trim and quote stripping of the reader. */
        const char *q = k->type == KEY_STRING ? "\"" : "";
        fprintf(f, "; %s\n%s = %s%s%s\n", k->doc, k->key, q, text, q);
    }
}

/* words joined by sep, or "-" when there are none: one column of the dump. */
static void words_write(FILE *f, const char *const *words, size_t n, char sep) {
    if (n == 0) fputc('-', f);
    for (size_t i = 0; i < n; i++) {
        if (i) fputc(sep, f);
        fputs(words[i], f);
    }
}

void config_dump_keys(FILE *f) {
    static const char *const type_names[] = {[KEY_INT] = "int", [KEY_U64] = "u64",
                                             [KEY_DOUBLE] = "double", [KEY_BOOL] = "bool",
                                             [KEY_STRING] = "string", [KEY_ENUM] = "enum"};
    static const struct {
        unsigned bit;
        const char *name;
    } flag_names[] = {{MIN_OPEN, "min_open"}, {MAX_OPEN, "max_open"}, {NONEMPTY, "nonempty"},
                      {FOLDER, "folder"}, {EMPTY_FIRST, "empty_first"}};
    enum { N_FLAGS = sizeof flag_names / sizeof flag_names[0] };
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyDesc *k = &keys[i];
        char lo[32] = "-", hi[32] = "-";
        if (k->type == KEY_INT) {
            snprintf(lo, sizeof lo, "%lld", (long long)k->min);
            snprintf(hi, sizeof hi, "%lld", (long long)k->max);
        } else if (k->type == KEY_DOUBLE) {
            format_double(k->min, lo, sizeof lo);
            format_double(k->max, hi, sizeof hi);
        }
        fprintf(f, "%s %s %s %s %s ", k->section, k->key, type_names[k->type], lo, hi);
        const char *flags[N_FLAGS];
        size_t n = 0;
        for (size_t b = 0; b < N_FLAGS; b++)
            if (k->flags & flag_names[b].bit) flags[n++] = flag_names[b].name;
        words_write(f, flags, n, '|');
        fputc(' ', f);
        words_write(f, k->names, k->type == KEY_ENUM ? enum_count(k) : 0, ',');
        if (k->type == KEY_STRING) fprintf(f, " %zu\n", k->size - 1);
        else fprintf(f, " -\n");
    }
}

char *config_to_string(const Config *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) die("open_memstream: %s", strerror(errno));
    config_write(c, f);
    if (fclose(f)) die("open_memstream: %s", strerror(errno));
    return buf;
}

const char *config_qk_name(QkMode m) {
    return (unsigned)m <= QK_TIED ? qk_names[m] : "?";
}

const char *config_smear_name(int smear) {
    return (unsigned)smear <= 2 ? smear_names[smear] : "?";
}

ModelShape config_model_shape(const Config *c, int V) {
    ModelShape s = {.V = V, .L = c->n_layer, .NH = c->n_head, .C = c->n_embd,
                    .maxT = c->block_size, .bias = c->bias,
                    .tie_embeddings = c->tie_embeddings, .qk_tied = c->qk == QK_TIED,
                    .smear = (SmearMode)c->smear};
    return s;
}

const char *config_qk_init_name(QkInit i) {
    return (unsigned)i <= QK_INIT_SYMMETRIC ? qk_init_names[i] : "?";
}

const char *config_init_name(InitScheme i) {
    return (unsigned)i <= INIT_TORCH ? init_names[i] : "?";
}

int config_key_describe(const char *section, const char *key, char *buf, size_t n) {
    const KeyDesc *k = key_find(section, key);
    if (!k) return -1;
    char list[256] = "";
    if (k->type == KEY_ENUM) join((const char **)k->names, enum_count(k), "", "", list, sizeof list);
    snprintf(buf, n, "%s%s", list[0] ? "allowed: " : "", list);
    return 0;
}

int config_task_differs(const Config *a, const Config *b, char *name, char *a_val, char *b_val,
                        size_t n) {
    for (size_t i = 0; i < N_KEYS; i++) {
        const KeyDesc *k = &keys[i];
        int is_kind = k->offset == offsetof(Config, task.kind);
        if (!is_kind && (k->owner == TASK_NONE || k->owner != a->task.kind)) continue;
        if (memcmp((const char *)a + k->offset, (const char *)b + k->offset, k->size) == 0)
            continue;
        Value va = value_load(a, k), vb = value_load(b, k);
        snprintf(name, n, "[%s] %s", k->section, k->key);
        value_format(k, &va, a_val, n);
        value_format(k, &vb, b_val, n);
        return 1;
    }
    return 0;
}/* ---- loading INI text ---- */

typedef struct {
    Config *c;
    const char *name; /* file path or text name, for messages */
    const char *text;
    size_t len, pos;
    int line;             /* line last handed to inih */
    const char *section;  /* current section, NULL before the first header */
    size_t n_assigned;    /* key lines seen, to spot an empty file */
    unsigned order;
    Origin origins[N_KEYS];
    Error *err;
    int failed;
} Loader;

/* Refuses what inih would mangle or what is not text at all: NUL bytes,
 * invalid UTF-8, and lines longer than CONFIG_LINE_MAX (inih would split them
 * silently and report a wrong line). */
static int text_check(const char *name, const char *text, size_t len, Error *err) {
    const unsigned char *s = (const unsigned char *)text;
    int line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i <= len;) {
        if (i == len || s[i] == '\n') {
            size_t n = i - line_start;
            if (n > 0 && s[i - 1] == '\r') n--;
            if (n > CONFIG_LINE_MAX)
                return error_set(err, "%s:%d: line too long (%zu bytes, at most %d allowed)", name,
                                 line, n, CONFIG_LINE_MAX);
            if (i == len) break;
            line++;
            line_start = ++i;
            continue;
        }
        if (s[i] == 0) return error_set(err, "%s:%d: not a text file (NUL byte)", name, line);
        size_t w = utf8_len(s + i, len - i);
        if (w == 0) return error_set(err, "%s:%d: not a text file (invalid UTF-8)", name, line);
        i += w;
    }
    return 0;
}

/* inih pulls lines through this reader, which lets us count lines (the
 * Debian build has no line numbers in the handler) and vet section headers,
 * including ones without any keys under them. */
static char *loader_read(char *str, int num, void *stream) {
    Loader *ld = stream;
    if (ld->failed || ld->pos >= ld->len) return NULL;
    const char *start = ld->text + ld->pos;
    const char *nl = memchr(start, '\n', ld->len - ld->pos);
    size_t n = nl ? (size_t)(nl - start) + 1 : ld->len - ld->pos;
    if (n >= (size_t)num) die("config line %d longer than inih's buffer", ld->line + 1);
    memcpy(str, start, n);
    str[n] = '\0';
    ld->pos += n;
    ld->line++;

    const char *p = str;
    while (is_space(*p)) p++;
    const char *close = *p == '[' ? strchr(p, ']') : NULL;
    if (close) { /* without ']' inih reports the syntax error */
        char section[CONFIG_LINE_MAX + 1]; /* a copy: inih still parses str */
        snprintf(section, sizeof section, "%.*s", (int)(close - p - 1), p + 1);
        const char *name = trim(section);
        char where[512];
        snprintf(where, sizeof where, "%s:%d", ld->name, ld->line);
        ld->section = section_find(name);
        if (!ld->section) {
            ld->failed = 1;
            unknown_section(where, name, ld->err);
            return NULL;
        }
    }
    return str;
}

static int loader_handle(void *user, const char *section, const char *key, const char *value) {
    (void)section; /* the reader tracks it, trimmed and validated */
    Loader *ld = user;
    char where[512];
    snprintf(where, sizeof where, "%s:%d", ld->name, ld->line);
    ld->n_assigned++;
    const KeyDesc *k;
    if (!ld->section) {
        char shown[EXCERPT_SIZE];
        excerpt(key, strlen(key), shown);
        error_set(ld->err, "%s: key '%s' before any [section] line", where, shown);
    } else if (lookup(ld->section, key, where, &k, ld->err) == 0) {
        Origin *o = &ld->origins[k - keys];
        if (o->line)
            error_set(ld->err, "%s: [%s] %s set twice (first at line %d)", where, k->section,
                      k->key, o->line);
        else if (key_set(ld->c, k, value, where, ld->err) == 0)
            return *o = (Origin){.line = ld->line, .order = ++ld->order}, 1;
    }
    ld->failed = 1;
    return 0;
}

/* The run name defaults to the config's file name without its extension. */
static void default_name(const char *name, char *out, size_t n) {
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(out, n, "%.*s", (int)len, base);
}

/* inih's process-wide options, saved around a parse (see loader_parse). */
typedef struct {
    int max_line;
    bool multiline, inline_comments, stop_on_first_error;
} IniOptions;

/* Defaults, then the INI text; leaves origins in ld for the cross checks. */
static int loader_parse(Loader *ld, Config *c, const char *text, size_t len, const char *name,
                        Error *err) {
    *ld = (Loader){.c = c, .name = name, .text = text, .len = len, .err = err};
    config_defaults(c);
    if (text_check(name, text, len, err)) return -1;

    char run_name[sizeof c->name + 1];
    default_name(name, run_name, sizeof run_name);
    if (key_set(c, KEY_OF(name), run_name, name, err)) return -1;

    /* A leading BOM is allowed; dropping it here keeps header detection in
     * loader_read simple. */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) ld->pos = 3;

    /* Debian's inih makes its compile-time options runtime globals: the line
     * buffer (default 200 bytes) must hold our longest line plus "\r\n\0";
     * continuation lines and inline ';' comments are off so a value is
     * exactly the text after '=' (a probe text may contain " ;"). */
    IniOptions saved = {ini_max_line, ini_allow_multiline, ini_allow_inline_comments,
                        ini_stop_on_first_error};
    ini_max_line = CONFIG_LINE_MAX + 3;
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_stop_on_first_error = true;
    int rc = ini_parse_stream(loader_read, ld, loader_handle, ld);
    ini_max_line = saved.max_line;
    ini_allow_multiline = saved.multiline;
    ini_allow_inline_comments = saved.inline_comments;
    ini_stop_on_first_error = saved.stop_on_first_error;

    if (ld->failed) return -1;
    if (rc > 0)
        return error_set(err, "%s:%d: syntax error (expected [section] or key = value)", name, rc);
    if (rc < 0) die("inih failed (%d) parsing %s", rc, name);
    if (ld->n_assigned == 0)
        return error_set(err, "%s: empty config file (expected [section] and key = value lines)",
                         name);
    return 0;
}

/* With a task, the corpus path's default does not apply. */
static void task_clear_path(Config *c, const Origin *origins) {
    if (c->task.kind != TASK_NONE && !origins[KEY_OF(data_path) - keys].order)
        memset(c->data_path, 0, sizeof c->data_path);
}

int config_load_string(Config *c, const char *text, const char *name, Error *err) {
    Loader ld;
    if (loader_parse(&ld, c, text, strlen(text), name, err)) return -1;
    task_clear_path(c, ld.origins);
    return validate(c, ld.origins, name, err);
}

/* Reads the whole file (at most FILE_MAX_BYTES), NUL-terminated; *len
 * excludes the terminator so embedded NUL bytes stay visible. */
static char *file_read(const char *path, size_t *len, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        error_set(err, "%s: cannot open config: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = xmalloc(FILE_MAX_BYTES + 2);
    size_t n = fread(buf, 1, FILE_MAX_BYTES + 1, f);
    int failed = ferror(f);
    int saved_errno = errno;
    fclose(f);
    if (failed)
        error_set(err, "%s: cannot read config: %s", path, strerror(saved_errno));
    else if (n > FILE_MAX_BYTES)
        error_set(err, "%s: config file larger than %u bytes", path, FILE_MAX_BYTES);
    if (failed || n > FILE_MAX_BYTES) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int config_load(Config *c, const char *path, int n_overrides, char **overrides, Error *err) {
    size_t len;
    char *text = file_read(path, &len, err);
    if (!text) return -1;
    Loader ld;
    int rc = loader_parse(&ld, c, text, len, path, err);
    free(text);
    if (rc) return -1;

    for (int i = 0; i < n_overrides; i++) {
        Origin o = {.override = overrides[i], .order = ++ld.order};
        char where[512];
        origin_where(&o, path, where, sizeof where);
        size_t n = strlen(overrides[i]);
        char *copy = xmalloc(n + 1);
        memcpy(copy, overrides[i], n + 1);
        char *eq = strchr(copy, '=');
        char *dot = eq ? memchr(copy, '.', (size_t)(eq - copy)) : NULL;
        const KeyDesc *k = NULL;
        if (!dot) {
            rc = error_set(err, "%s: expected section.key=value", where);
        } else {
            *dot = *eq = '\0';
            rc = lookup(trim(copy), trim(dot + 1), where, &k, err);
            if (rc == 0) rc = key_set(c, k, eq + 1, where, err);
        }
        free(copy);
        if (rc) return -1;
        ld.origins[k - keys] = o;
    }
    task_clear_path(c, ld.origins);
    return validate(c, ld.origins, path, err);
}
