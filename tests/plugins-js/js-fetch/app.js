// An HTTP GET in JavaScript with fetch (over wasi:http): the input is a
// path on the `web` endpoint ({"path": "/page"}) or a full URL
// ({"url": "http://..."}); the summary is {"status": S, "text": T} or
// {"error": MESSAGE}.

import { endpoint } from 'keel:host/config@0.1.0';

export async function handle(trigger) {
  const given = JSON.parse(trigger.input ?? '{}');
  let url = given.url;
  if (url === undefined) {
    const base = endpoint('web');
    if (base === undefined) {
      throw { tag: 'denied', val: 'no endpoint `web`; add it under [capabilities.endpoints]' };
    }
    url = base.replace(/\/$/, '') + (given.path ?? '/');
  }
  let result;
  try {
    const response = await fetch(url);
    const text = await response.text();
    result = { status: response.status, text: text.slice(0, 200) };
  } catch (e) {
    result = { error: `${e?.name ?? 'Error'}: ${e?.message ?? e}` };
  }
  return { summary: JSON.stringify(result), confidence: undefined };
}
