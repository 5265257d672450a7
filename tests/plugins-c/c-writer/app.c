// The writer scenario in C, twin of tests/plugins/rs-writer (which says what
// it does), tests/plugins-py/py-writer and tests/plugins-js/js-writer.
//
// `agent.h` is generated from wit/host.wit's `agent` world by wit-bindgen's
// C generator. Its conventions: strings are (pointer, length) pairs, not
// NUL-terminated; an import's arguments stay the caller's, its results
// become the caller's (free them with the `*_free` functions); an export's
// arguments are the callee's to free, and what it returns must be on the
// heap (the bindings free it once the host has copied it).

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

static const char LANG[] = "c";

// A growing byte buffer; running out of memory ends the run (a trap).
typedef struct {
  char *ptr;
  size_t len, cap;
} buf_t;

static void buf_put(buf_t *b, const char *s, size_t n) {
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

static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

// `s` as a JSON string, quotes included.
static void buf_json(buf_t *b, const char *s, size_t n) {
  buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      buf_put(b, e, 2);
    } else if (c < 0x20) {
      char e[7];
      snprintf(e, sizeof e, "\\u%04x", c);
      buf_put(b, e, 6);
    } else {
      buf_put(b, (const char *)&s[i], 1);
    }
  }
  buf_put(b, "\"", 1);
}

// The buffer's bytes as a WIT string (borrowed: still the buffer's).
static agent_string_t buf_view(const buf_t *b) {
  return (agent_string_t){(uint8_t *)b->ptr, b->len};
}

// Just enough of a JSON reader to take one string member out of an object
// and to tell malformed input apart.
typedef struct {
  const char *p, *end;
} json_t;

static void skip_ws(json_t *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int hex4(const char *p) {
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

static void put_utf8(buf_t *b, uint32_t cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) { u[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) { u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
  else { u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 0x3F)); u[2] = (char)(0x80 | (cp >> 6 & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
  buf_put(b, u, n);
}

// A string at the cursor, decoded into `out` (if given).
static bool read_string(json_t *j, buf_t *out) {
  if (j->p >= j->end || *j->p != '"') return false;
  j->p++;
  while (j->p < j->end) {
    char c = *j->p++;
    if (c == '"') return true;
    if ((unsigned char)c < 0x20) return false;
    if (c != '\\') {
      if (out) buf_put(out, &c, 1);
      continue;
    }
    if (j->p >= j->end) return false;
    char e = *j->p++;
    static const char escaped[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
    const char *plain = e ? strchr(escaped, e) : NULL;
    if (plain) {
      if (out) buf_put(out, &decoded[plain - escaped], 1);
      continue;
    }
    if (e != 'u' || j->end - j->p < 4) return false;
    int cp = hex4(j->p);
    if (cp < 0) return false;
    j->p += 4;
    if (cp >= 0xD800 && cp < 0xDC00) {
      if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') return false;
      int lo = hex4(j->p + 2);
      if (lo < 0xDC00 || lo > 0xDFFF) return false;
      j->p += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp < 0xE000) {
      return false;
    }
    if (out) put_utf8(out, (uint32_t)cp);
  }
  return false;
}

static bool skip_value(json_t *j, int depth);

// The members or items of an object or array, after its opening bracket.
static bool skip_container(json_t *j, char close, int depth) {
  skip_ws(j);
  if (j->p < j->end && *j->p == close) { j->p++; return true; }
  for (;;) {
    skip_ws(j);
    if (close == '}') {
      if (!read_string(j, NULL)) return false;
      skip_ws(j);
      if (j->p >= j->end || *j->p++ != ':') return false;
    }
    if (!skip_value(j, depth + 1)) return false;
    skip_ws(j);
    if (j->p >= j->end) return false;
    char c = *j->p++;
    if (c == close) return true;
    if (c != ',') return false;
  }
}

static bool skip_value(json_t *j, int depth) {
  if (depth > 64) return false;
  skip_ws(j);
  if (j->p >= j->end) return false;
  char c = *j->p;
  if (c == '"') return read_string(j, NULL);
  if (c == '{' || c == '[') { j->p++; return skip_container(j, c == '{' ? '}' : ']', depth); }
  const char *start = j->p;
  while (j->p < j->end && strchr("+-.0123456789eEtruefalsn", *j->p)) j->p++;
  size_t n = (size_t)(j->p - start);
  if (n == 0) return false;
  if ((n == 4 && !memcmp(start, "true", 4)) || (n == 5 && !memcmp(start, "false", 5)) || (n == 4 && !memcmp(start, "null", 4))) return true;
  return c == '-' || (c >= '0' && c <= '9');
}

typedef enum { TEXT_FOUND, TEXT_MISSING, NOT_JSON } text_t;

// The non-empty string member `text` of the object in `input`.
static text_t input_text(const agent_string_t *input, buf_t *text) {
  json_t j = {(const char *)input->ptr, (const char *)input->ptr + input->len};
  skip_ws(&j);
  if (j.p >= j.end || *j.p != '{') return skip_value(&j, 0) ? TEXT_MISSING : NOT_JSON;
  j.p++;
  bool found = false;
  skip_ws(&j);
  if (j.p < j.end && *j.p == '}') return TEXT_MISSING;
  for (;;) {
    buf_t key = {0};
    skip_ws(&j);
    bool ok = read_string(&j, &key);
    bool is_text = ok && key.len == 4 && !memcmp(key.ptr, "text", 4);
    free(key.ptr);
    if (!ok) return NOT_JSON;
    skip_ws(&j);
    if (j.p >= j.end || *j.p++ != ':') return NOT_JSON;
    skip_ws(&j);
    if (is_text && j.p < j.end && *j.p == '"') {
      text->len = 0;
      if (!read_string(&j, text)) return NOT_JSON;
      found = text->len > 0;
    } else {
      if (is_text) found = false;
      if (!skip_value(&j, 1)) return NOT_JSON;
    }
    skip_ws(&j);
    if (j.p >= j.end) return NOT_JSON;
    char c = *j.p++;
    if (c == '}') break;
    if (c != ',') return NOT_JSON;
  }
  return found ? TEXT_FOUND : TEXT_MISSING;
}

static bool fail(agent_error_t *err, uint8_t tag, const char *message) {
  err->tag = tag;
  // Every variant carries its sentence in the same place.
  agent_string_dup(&err->val.invalid, message);
  return false;
}

// The host's error, handed on as this run's.
static bool pass_on(agent_error_t *err, keel_host_actions_error_t *host) {
  *err = *host;
  return false;
}

static keel_host_actions_write_options_t write_options(agent_string_t *note) {
  keel_host_actions_write_options_t o = {0};
  o.note.is_some = true;
  o.note.val = *note;
  return o;
}

bool exports_agent_handle(agent_trigger_t *trigger, agent_outcome_t *ret, agent_error_t *err) {
  bool ok = false;
  buf_t text = {0}, note = {0}, body = {0}, summary = {0};
  agent_string_t given = {(uint8_t *)"{}", 2};
  if (trigger->input.is_some) given = trigger->input.val;
  switch (input_text(&given, &text)) {
  case NOT_JSON:
    fail(err, KEEL_HOST_TYPES_ERROR_INVALID, "input is not JSON");
    goto out;
  case TEXT_MISSING:
    fail(err, KEEL_HOST_TYPES_ERROR_INVALID, "give {\"text\": TEXT}");
    goto out;
  case TEXT_FOUND:
    break;
  }
  buf_str(&note, LANG);
  buf_str(&note, "-writer");
  agent_string_t note_s = buf_view(&note);

  // Create the item under its identity: the same text finds the same item.
  buf_str(&body, "{\"text\":");
  buf_json(&body, text.ptr, text.len);
  buf_str(&body, "}");
  agent_string_t kind, body_s = buf_view(&body);
  agent_string_set(&kind, "test/item");
  keel_host_actions_option_identity_t identity = {.is_some = true};
  agent_string_set(&identity.val.source, "writer");
  identity.val.external_id = buf_view(&text);
  keel_host_actions_write_options_t options = write_options(&note_s);
  keel_host_actions_created_t created;
  keel_host_actions_error_t host_err;
  if (!keel_host_actions_create(&kind, &body_s, &identity.val, &options, &created, &host_err)) {
    pass_on(err, &host_err);
    goto out;
  }

  // A new item gets its second version, which names the language.
  if (!created.existed) {
    body.len = 0;
    buf_str(&body, "{\"text\":");
    buf_json(&body, text.ptr, text.len);
    buf_str(&body, ",\"lang\":");
    buf_json(&body, LANG, strlen(LANG));
    buf_str(&body, "}");
    body_s = buf_view(&body);
    keel_host_actions_record_t updated;
    if (!keel_host_actions_update(&created.record.id, 1, &body_s, &options, &updated, &host_err)) {
      keel_host_actions_created_free(&created);
      pass_on(err, &host_err);
      goto out;
    }
    keel_host_actions_record_free(&updated);
  }

  keel_host_records_record_t read;
  keel_host_records_error_t read_err;
  if (!keel_host_records_get(&created.record.id, &read, &read_err)) {
    keel_host_actions_created_free(&created);
    pass_on(err, &read_err);
    goto out;
  }
  char line[160];
  snprintf(line, sizeof line, "wrote %.*s at version %llu", (int)read.id.len, (const char *)read.id.ptr,
           (unsigned long long)read.version);
  agent_string_t line_s;
  agent_string_set(&line_s, line);
  keel_host_log_log(KEEL_HOST_LOG_LEVEL_INFO, &line_s);

  // A kind the manifest does not grant.
  agent_string_t secret;
  agent_string_set(&secret, "test/secret");
  body.len = 0;
  buf_str(&body, "{\"text\":");
  buf_json(&body, text.ptr, text.len);
  buf_str(&body, "}");
  body_s = buf_view(&body);
  keel_host_actions_created_t sneaked;
  const char *undeclared = "allowed";
  if (keel_host_actions_create(&secret, &body_s, NULL, &options, &sneaked, &host_err)) {
    keel_host_actions_created_free(&sneaked);
  } else {
    undeclared = host_err.tag == KEEL_HOST_TYPES_ERROR_DENIED ? "denied" : "other";
    keel_host_actions_error_free(&host_err);
  }

  buf_str(&summary, "{\"created\":");
  buf_json(&summary, (const char *)created.record.id.ptr, created.record.id.len);
  buf_str(&summary, created.existed ? ",\"existed\":true" : ",\"existed\":false");
  char version[40];
  snprintf(version, sizeof version, ",\"version\":%llu,\"undeclared\":", (unsigned long long)read.version);
  buf_str(&summary, version);
  buf_json(&summary, undeclared, strlen(undeclared));
  buf_str(&summary, "}");
  keel_host_records_record_free(&read);
  keel_host_actions_created_free(&created);

  // The summary's bytes go to the bindings, which free them.
  ret->summary = (agent_string_t){(uint8_t *)summary.ptr, summary.len};
  ret->confidence.is_some = false;
  summary.ptr = NULL;
  ok = true;
out:
  free(text.ptr);
  free(note.ptr);
  free(body.ptr);
  free(summary.ptr);
  agent_trigger_free(trigger);
  return ok;
}
