// keel_json.h: just enough JSON for a keel plugin in C — a growing byte
// buffer, a string written as JSON, and one string member read out of an
// object. The host has already checked that inputs and bodies parse; this
// reader still refuses what is malformed rather than guess. For more, use a
// JSON library compiled with the same clang.
#ifndef KEEL_JSON_H
#define KEEL_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A growing byte buffer, always NUL-terminated once written to; running out
// of memory ends the run (a trap).
typedef struct {
  char *ptr;
  size_t len, cap;
} kj_buf_t;

static inline void kj_put(kj_buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (b->len + n + 1 > cap) cap *= 2;
    b->ptr = realloc(b->ptr, cap);
    if (!b->ptr) abort();
    b->cap = cap;
  }
  memcpy(b->ptr + b->len, s, n);
  b->len += n;
  b->ptr[b->len] = 0;
}

static inline void kj_str(kj_buf_t *b, const char *s) { kj_put(b, s, strlen(s)); }

// `s` (n bytes of UTF-8) as a JSON string, quotes included.
static inline void kj_json_string(kj_buf_t *b, const char *s, size_t n) {
  kj_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      kj_put(b, e, 2);
    } else if (c < 0x20) {
      char e[7];
      snprintf(e, sizeof e, "\\u%04x", c);
      kj_put(b, e, 6);
    } else {
      kj_put(b, &s[i], 1);
    }
  }
  kj_put(b, "\"", 1);
}

typedef struct {
  const char *p, *end;
} kj_reader_t;

static inline void kj_ws(kj_reader_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static inline int kj_hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  return v;
}

static inline void kj_utf8(kj_buf_t *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | cp >> 6);
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12);
    u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18);
    u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  kj_put(b, u, n);
}

// The string at the cursor, decoded into `out` when it is given.
static inline bool kj_read_string(kj_reader_t *j, kj_buf_t *out) {
  static const char escaped[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
  if (j->p >= j->end || *j->p != '"') return false;
  j->p++;
  while (j->p < j->end) {
    char c = *j->p++;
    if (c == '"') return true;
    if ((unsigned char)c < 0x20) return false;
    if (c != '\\') {
      if (out) kj_put(out, &c, 1);
      continue;
    }
    if (j->p >= j->end) return false;
    char e = *j->p++;
    const char *plain = e ? strchr(escaped, e) : NULL;
    if (plain) {
      if (out) kj_put(out, &decoded[plain - escaped], 1);
      continue;
    }
    if (e != 'u' || j->end - j->p < 4) return false;
    int cp = kj_hex4(j->p);
    if (cp < 0) return false;
    j->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00) {
      if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') return false;
      int lo = kj_hex4(j->p + 2);
      if (lo < 0xDC00 || lo > 0xDFFF) return false;
      j->p += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp < 0xE000) {
      return false;
    }
    if (out) kj_utf8(out, (uint32_t)cp);
  }
  return false;
}

static inline bool kj_skip(kj_reader_t *j, int depth);

// A member's name and its colon, the name decoded into `name` when given.
static inline bool kj_member_name(kj_reader_t *j, kj_buf_t *name) {
  kj_ws(j);
  if (!kj_read_string(j, name)) return false;
  kj_ws(j);
  if (j->p >= j->end || *j->p++ != ':') return false;
  kj_ws(j);
  return true;
}

// After an item of an object or array closed by `close`: 1 when another
// follows (a comma), 0 at the end (`close`), -1 when malformed.
static inline int kj_next(kj_reader_t *j, char close) {
  kj_ws(j);
  if (j->p >= j->end) return -1;
  char c = *j->p++;
  return c == ',' ? 1 : c == close ? 0 : -1;
}

// The rest of an object (`close` '}') or array (']') after its bracket.
static inline bool kj_skip_container(kj_reader_t *j, char close, int depth) {
  kj_ws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return true;
  }
  for (;;) {
    if (close == '}' && !kj_member_name(j, NULL)) return false;
    if (!kj_skip(j, depth + 1)) return false;
    int next = kj_next(j, close);
    if (next <= 0) return next == 0;
  }
}

// Any one value at the cursor, nested at most 64 deep.
static inline bool kj_skip(kj_reader_t *j, int depth) {
  if (depth > 64) return false;
  kj_ws(j);
  if (j->p >= j->end) return false;
  char c = *j->p;
  if (c == '"') return kj_read_string(j, NULL);
  if (c == '{' || c == '[') {
    j->p++;
    return kj_skip_container(j, c == '{' ? '}' : ']', depth);
  }
  const char *start = j->p;
  while (j->p < j->end && strchr("+-.0123456789eEtruefalsn", *j->p)) j->p++;
  size_t n = (size_t)(j->p - start);
  if (n == 0) return false;
  if ((n == 4 && !memcmp(start, "true", 4)) || (n == 5 && !memcmp(start, "false", 5)) ||
      (n == 4 && !memcmp(start, "null", 4)))
    return true;
  return c == '-' || (c >= '0' && c <= '9');
}

typedef enum {
  // The member is there and is a string (possibly empty).
  KJ_FOUND,
  // The text is JSON, but not an object with that member as a string.
  KJ_MISSING,
  // The text is not JSON.
  KJ_MALFORMED,
} kj_found_t;

// The string member `key` of the JSON object in `text` (`len` bytes),
// decoded into `out` (emptied first); the last one if `key` repeats.
static inline kj_found_t kj_string_member(const char *text, size_t len, const char *key, kj_buf_t *out) {
  kj_reader_t j = {text, text + len};
  size_t key_len = strlen(key);
  bool found = false;
  out->len = 0;
  if (out->ptr) out->ptr[0] = 0;
  kj_ws(&j);
  if (j.p >= j.end || *j.p != '{') return kj_skip(&j, 0) ? KJ_MISSING : KJ_MALFORMED;
  j.p++;
  kj_ws(&j);
  if (j.p < j.end && *j.p == '}') return KJ_MISSING;
  for (;;) {
    kj_buf_t name = {0};
    bool ok = kj_member_name(&j, &name);
    bool wanted = ok && name.len == key_len && !memcmp(name.ptr, key, key_len);
    free(name.ptr);
    if (!ok) return KJ_MALFORMED;
    if (wanted && j.p < j.end && *j.p == '"') {
      out->len = 0;
      if (!kj_read_string(&j, out)) return KJ_MALFORMED;
      found = true;
    } else {
      if (wanted) found = false;
      if (!kj_skip(&j, 1)) return KJ_MALFORMED;
    }
    int next = kj_next(&j, '}');
    if (next < 0) return KJ_MALFORMED;
    if (next == 0) break;
  }
  return found ? KJ_FOUND : KJ_MISSING;
}

#endif
