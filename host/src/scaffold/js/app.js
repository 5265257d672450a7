// {{name}}: keeps a `core/note` for each title it is given.
//
// Input: {"title": TITLE, "text": TEXT}. The note's identity is
// ("{{name}}", TITLE), so running again with the same title returns the
// note it already made instead of a second one.

import { create } from 'keel:host/actions@0.1.0';
import { log } from 'keel:host/log@0.1.0';

// Throwing { tag, val } returns that WIT error; a host call's error arrives
// as a thrown value whose `payload` is the error variant.
const invalid = (message) => ({ tag: 'invalid', val: message });

export function handle(trigger) {
  let given;
  try {
    given = JSON.parse(trigger.input ?? '{}');
  } catch (e) {
    throw invalid(`input is not JSON: ${e.message}`);
  }
  const title = given?.title;
  if (typeof title !== 'string' || title === '') {
    throw invalid('give {"title": TITLE, "text": TEXT}');
  }
  const body = { title, text: String(given.text ?? ''), type: 'note' };
  const created = create('core/note', JSON.stringify(body), { source: '{{name}}', externalId: title }, { sources: [], note: 'from input' });
  const said = created.existed ? 'already had' : 'created';
  log('info', `${said} note ${created.record.id}`);
  return { summary: `${said} note ${created.record.id}` };
}
