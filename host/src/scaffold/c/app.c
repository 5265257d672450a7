// {{name}}: keeps a `core/note` for each title it is given.
//
// Input: {"title": TITLE, "text": TEXT}. The note's identity is
// ("{{name}}", TITLE), so running again with the same title returns the
// note it already made instead of a second one.
//
// `agent.h` is what build.sh has wit-bindgen generate from wit/host.wit's
// `agent` world. Strings are (pointer, length) pairs, not NUL-terminated.
// A host function's arguments stay yours and what it returns becomes yours
// (free it with the matching `*_free`); this export's arguments are yours
// to free, and what it returns must be on the heap (the bindings free it).

#include <string.h>

#include "agent.h"
#include "keel_json.h"

static agent_string_t view(const kj_buf_t *b) { return (agent_string_t){(uint8_t *)b->ptr, b->len}; }

static bool invalid(agent_error_t *err, const char *message) {
  err->tag = KEEL_HOST_TYPES_ERROR_INVALID;
  agent_string_dup(&err->val.invalid, message);
  return false;
}

bool exports_agent_handle(agent_trigger_t *trigger, agent_outcome_t *ret, agent_error_t *err) {
  bool ok = false;
  kj_buf_t title = {0}, text = {0}, body = {0}, said = {0};
  const char *input = "{}";
  size_t input_len = 2;
  if (trigger->input.is_some) {
    input = (const char *)trigger->input.val.ptr;
    input_len = trigger->input.val.len;
  }
  kj_found_t found = kj_string_member(input, input_len, "title", &title);
  if (found == KJ_MALFORMED) {
    invalid(err, "input is not JSON");
    goto out;
  }
  if (found == KJ_MISSING || title.len == 0) {
    invalid(err, "give {\"title\": TITLE, \"text\": TEXT}");
    goto out;
  }
  kj_string_member(input, input_len, "text", &text);

  kj_str(&body, "{\"title\":");
  kj_json_string(&body, title.ptr, title.len);
  kj_str(&body, ",\"text\":");
  kj_json_string(&body, text.ptr ? text.ptr : "", text.len);
  kj_str(&body, ",\"type\":\"note\"}");

  agent_string_t kind, body_s = view(&body), note;
  agent_string_set(&kind, "core/note");
  agent_string_set(&note, "from input");
  keel_host_actions_identity_t identity = {.external_id = view(&title)};
  agent_string_set(&identity.source, "{{name}}");
  keel_host_actions_write_options_t options = {.note = {true, note}};
  keel_host_actions_created_t created;
  keel_host_actions_error_t host_err;
  if (!keel_host_actions_create(&kind, &body_s, &identity, &options, &created, &host_err)) {
    *err = host_err; // the host's error (e.g. `denied`) ends the run
    goto out;
  }
  kj_str(&said, created.existed ? "already had note " : "created note ");
  kj_put(&said, (const char *)created.record.id.ptr, created.record.id.len);
  keel_host_actions_created_free(&created);
  agent_string_t line = view(&said);
  keel_host_log_log(KEEL_HOST_LOG_LEVEL_INFO, &line);

  ret->summary = line; // on the heap: the bindings free it
  ret->confidence.is_some = false;
  said.ptr = NULL;
  ok = true;
out:
  free(title.ptr);
  free(text.ptr);
  free(body.ptr);
  free(said.ptr);
  agent_trigger_free(trigger);
  return ok;
}
