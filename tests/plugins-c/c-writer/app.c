// The writer scenario in C, twin of tests/plugins/rs-writer (which says what
// it does), tests/plugins-py/py-writer and tests/plugins-js/js-writer.
//
// `agent.h` is generated from wit/host.wit's `agent` world by wit-bindgen's
// C generator. Its conventions: strings are (pointer, length) pairs, not
// NUL-terminated; an import's arguments stay the caller's, its results
// become the caller's (free them with the `*_free` functions); an export's
// arguments are the callee's to free, and what it returns must be on the
// heap (the bindings free it once the host has copied it). `keel_json.h` is
// the JSON helper `keel new agent --lang c` writes.

#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "keel_json.h"

static const char LANG[] = "c";

// The buffer's bytes as a WIT string (borrowed: still the buffer's).
static agent_string_t view(const kj_buf_t *b) { return (agent_string_t){(uint8_t *)b->ptr, b->len}; }

// `{"text": TEXT}`, with `"lang": LANG` when `lang`.
static void item_body(kj_buf_t *body, const kj_buf_t *text, bool lang) {
  body->len = 0;
  kj_str(body, "{\"text\":");
  kj_json_string(body, text->ptr, text->len);
  if (lang) {
    kj_str(body, ",\"lang\":");
    kj_json_string(body, LANG, strlen(LANG));
  }
  kj_str(body, "}");
}

static bool invalid(agent_error_t *err, const char *message) {
  err->tag = KEEL_HOST_TYPES_ERROR_INVALID;
  agent_string_dup(&err->val.invalid, message);
  return false;
}

bool exports_agent_handle(agent_trigger_t *trigger, agent_outcome_t *ret, agent_error_t *err) {
  bool ok = false;
  kj_buf_t text = {0}, note = {0}, body = {0}, summary = {0};
  agent_string_t given = {(uint8_t *)"{}", 2};
  if (trigger->input.is_some) given = trigger->input.val;
  switch (kj_string_member((const char *)given.ptr, given.len, "text", &text)) {
  case KJ_MALFORMED:
    invalid(err, "input is not JSON");
    goto out;
  case KJ_MISSING:
    invalid(err, "give {\"text\": TEXT}");
    goto out;
  case KJ_FOUND:
    if (text.len == 0) {
      invalid(err, "give {\"text\": TEXT}");
      goto out;
    }
    break;
  }
  kj_str(&note, LANG);
  kj_str(&note, "-writer");
  keel_host_actions_write_options_t options = {.note = {true, view(&note)}};
  keel_host_actions_error_t host_err;

  // Create the item under its identity: the same text finds the same item.
  agent_string_t kind;
  agent_string_set(&kind, "test/item");
  keel_host_actions_identity_t identity = {.external_id = view(&text)};
  agent_string_set(&identity.source, "writer");
  item_body(&body, &text, false);
  agent_string_t body_s = view(&body);
  keel_host_actions_created_t created;
  if (!keel_host_actions_create(&kind, &body_s, &identity, &options, &created, &host_err)) {
    *err = host_err; // the host's error, handed on as this run's
    goto out;
  }

  // A new item gets its second version, which names the language.
  if (!created.existed) {
    item_body(&body, &text, true);
    body_s = view(&body);
    keel_host_actions_record_t updated;
    if (!keel_host_actions_update(&created.record.id, 1, &body_s, &options, &updated, &host_err)) {
      keel_host_actions_created_free(&created);
      *err = host_err;
      goto out;
    }
    keel_host_actions_record_free(&updated);
  }

  keel_host_records_record_t read;
  if (!keel_host_records_get(&created.record.id, &read, &host_err)) {
    keel_host_actions_created_free(&created);
    *err = host_err;
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
  item_body(&body, &text, false);
  body_s = view(&body);
  keel_host_actions_created_t sneaked;
  const char *undeclared = "allowed";
  if (keel_host_actions_create(&secret, &body_s, NULL, &options, &sneaked, &host_err)) {
    keel_host_actions_created_free(&sneaked);
  } else {
    undeclared = host_err.tag == KEEL_HOST_TYPES_ERROR_DENIED ? "denied" : "other";
    keel_host_actions_error_free(&host_err);
  }

  kj_str(&summary, "{\"created\":");
  kj_json_string(&summary, (const char *)created.record.id.ptr, created.record.id.len);
  kj_str(&summary, created.existed ? ",\"existed\":true" : ",\"existed\":false");
  char version[40];
  snprintf(version, sizeof version, ",\"version\":%llu,\"undeclared\":", (unsigned long long)read.version);
  kj_str(&summary, version);
  kj_json_string(&summary, undeclared, strlen(undeclared));
  kj_str(&summary, "}");
  keel_host_records_record_free(&read);
  keel_host_actions_created_free(&created);

  // The summary's bytes go to the bindings, which free them.
  ret->summary = view(&summary);
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
