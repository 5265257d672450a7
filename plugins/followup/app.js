// The followup agent: a reminder task for each mail thread that has waited
// longer than N days for a reply.
//
// A `core/message` waits for a reply when no later message in its thread
// (the same subject, less any "Re:"/"Fwd:") was sent to its sender. Mails
// from the operator (config `me`) wait for nobody. For each one older than
// `days` (config, default 3; or input {"days": N}) it opens a `core/task`
// "Follow up: SUBJECT", derived from and linked to the message, with the
// identity ("followup", message id), so a thread gets one reminder however
// often this runs. Input {"now": RFC 3339} checks as of that time.

import { query } from 'keel:host/records@0.1.0';
import { create, link } from 'keel:host/actions@0.1.0';
import { get as configGet } from 'keel:host/config@0.1.0';
import { log } from 'keel:host/log@0.1.0';

const PAGE = 500;
const MOST_READ = 20000;
const DAY_MS = 24 * 60 * 60 * 1000;

const invalid = (message) => ({ tag: 'invalid', val: message });

function readAll(kind) {
  const out = [];
  let cursor;
  for (;;) {
    const page = query(kind, PAGE, cursor);
    out.push(...page.records);
    if (page.next === undefined || page.next === null || out.length >= MOST_READ) return out;
    cursor = page.next;
  }
}

// "Ann <ann@example.com>" -> "ann@example.com".
function address(text) {
  const m = /<([^>]+)>/.exec(text ?? '');
  return (m ? m[1] : text ?? '').trim().toLowerCase();
}

// "Re: Fwd: Invoice 42" -> "invoice 42".
function thread(subject) {
  let s = (subject ?? '').trim();
  for (;;) {
    const next = s.replace(/^(re|fwd?|aw|wg)\s*:\s*/i, '');
    if (next === s) return s.toLowerCase();
    s = next;
  }
}

function settings(trigger) {
  let given = {};
  if (trigger.input) {
    try {
      given = JSON.parse(trigger.input);
    } catch (e) {
      throw invalid(`input is not JSON (${e.message}); give {"days": N, "now": "RFC 3339"}`);
    }
    if (given === null || typeof given !== 'object' || Array.isArray(given)) {
      throw invalid('input is a JSON object: {"days": N, "now": "RFC 3339"}');
    }
  }
  let days = given.days ?? configGet('days') ?? '3';
  days = Number(days);
  if (!Number.isFinite(days) || days < 0 || days > 365) {
    throw invalid(`days is a number from 0 to 365, not ${JSON.stringify(given.days ?? configGet('days'))}`);
  }
  const now = given.now === undefined ? Date.now() : Date.parse(given.now);
  if (Number.isNaN(now)) {
    throw invalid(`now is an RFC 3339 time such as 2026-12-01T09:00:00Z, not ${JSON.stringify(given.now)}`);
  }
  return { days, now, me: address(configGet('me') ?? '') };
}

export function handle(trigger) {
  const { days, now, me } = settings(trigger);
  const messages = readAll('core/message').map((r) => {
    const body = JSON.parse(r.body);
    return {
      id: r.id,
      body,
      key: body.message_id || r.id,
      from: address(body.from),
      to: (body.to ?? []).map(address),
      thread: thread(body.subject),
      at: Date.parse(body.date ?? r.created_at),
    };
  });
  const byThread = new Map();
  for (const m of messages) {
    if (!byThread.has(m.thread)) byThread.set(m.thread, []);
    byThread.get(m.thread).push(m);
  }
  let opened = 0;
  let waiting = 0;
  for (const m of messages) {
    if (Number.isNaN(m.at) || !m.from || m.from === me) continue;
    if (now - m.at < days * DAY_MS) continue;
    const answered = byThread
      .get(m.thread)
      .some((r) => r !== m && r.at > m.at && r.to.includes(m.from));
    if (answered) continue;
    waiting += 1;
    const waited = Math.floor((now - m.at) / DAY_MS);
    const subject = m.body.subject || '(no subject)';
    const task = {
      title: `Follow up: ${subject} (from ${m.body.from}, ${waited} days without a reply)`.slice(0, 300),
      state: 'open',
      source: m.id,
    };
    const made = create(
      'core/task',
      JSON.stringify(task),
      { source: 'followup', externalId: m.key },
      { sources: [m.id], note: `no reply after ${days} days` },
    );
    if (!made.existed) {
      link(made.record.id, m.id, 'derived-from');
      opened += 1;
    }
  }
  log('info', `${waiting} threads waiting, ${opened} new reminders`);
  return {
    summary: `${opened} new reminders; ${waiting} of ${messages.length} messages waiting for a reply after ${days} days`,
  };
}
