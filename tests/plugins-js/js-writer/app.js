// The writer scenario in JavaScript, twin of tests/plugins/rs-writer (which
// says what it does) and tests/plugins-py/py-writer.

import { create, update } from 'keel:host/actions@0.1.0';
import { get } from 'keel:host/records@0.1.0';
import { log } from 'keel:host/log@0.1.0';

const LANG = 'javascript';

const options = () => ({ sources: [], note: `${LANG}-writer` });

// A WIT error returned from an export is thrown; a host call's error
// arrives as a thrown value whose payload is the error variant.
const invalid = (message) => ({ tag: 'invalid', val: message });
const errorTag = (e) => e?.payload?.tag ?? 'other';

export function handle(trigger) {
  let given;
  try {
    given = JSON.parse(trigger.input ?? '{}');
  } catch (e) {
    throw invalid(`input is not JSON: ${e.message}`);
  }
  const text = given?.text;
  if (typeof text !== 'string' || text === '') {
    throw invalid('give {"text": TEXT}');
  }
  const created = create('test/item', JSON.stringify({ text }), { source: 'writer', externalId: text }, options());
  const id = created.record.id;
  if (!created.existed) {
    update(id, 1n, JSON.stringify({ text, lang: LANG }), options());
  }
  const read = get(id);
  log('info', `wrote ${id} at version ${read.version}`);
  let undeclared = 'allowed';
  try {
    create('test/secret', JSON.stringify({ text }), undefined, options());
  } catch (e) {
    undeclared = errorTag(e) === 'denied' ? 'denied' : 'other';
  }
  const summary = { created: id, existed: created.existed, version: Number(read.version), undeclared };
  return { summary: JSON.stringify(summary) };
}
