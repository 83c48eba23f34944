'use strict';

// One REST-hook trigger per event type of the product's catalogue, all made here from
// event-types.json (written from chalicelib/integrations/catalogue.py by
// generate_event_types.py; a test checks it is current).

const crypto = require('crypto');
const EVENT_TYPES = require('./event-types.json');
const { apiUrl } = require('./api');

// A delivery older or newer than this is refused (Standard Webhooks' default tolerance).
const TOLERANCE_SECONDS = 5 * 60;
// How long a delivered webhook-id is remembered: longer than the product's retries (72 h).
const SEEN_SECONDS = 4 * 24 * 60 * 60;

// Zapier's trigger keys are identifiers: `payment_plan.completed` → `payment_plan_completed`.
const triggerKey = (eventType) => eventType.replace(/\./g, '_');

// A header of the delivery as Zapier hands it over (it prefixes them with `Http-`).
const header = (headers, name) => {
  const wanted = [name.toLowerCase(), `http-${name.toLowerCase()}`];
  const found = Object.keys(headers || {}).find((k) => wanted.includes(k.toLowerCase()));
  return found === undefined ? undefined : String(headers[found]);
};

// Standard Webhooks v1: base64 HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the
// secret's bytes (after `whsec_`); the header holds one or more `v1,<signature>` (several
// while a secret rotates).
const signatureValid = (secret, headers, body, nowSeconds) => {
  const id = header(headers, 'webhook-id');
  const timestamp = header(headers, 'webhook-timestamp');
  const signatures = header(headers, 'webhook-signature');
  if (!secret || !id || !timestamp || !signatures || !/^\d{1,12}$/.test(timestamp)) {
    return false;
  }
  if (Math.abs(nowSeconds - Number(timestamp)) > TOLERANCE_SECONDS) {
    return false;
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  // Compared as the base64 text the reference libraries compare (Node's base64 decoder
  // would also take a signature stripped of its padding).
  const expected = Buffer.from(
    crypto.createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64'),
  );
  return signatures.split(' ').some((entry) => {
    const [version, value] = entry.split(',', 2);
    if (version !== 'v1' || !value) {
      return false;
    }
    const given = Buffer.from(value);
    return given.length === expected.length && crypto.timingSafeEqual(given, expected);
  });
};

const makeTrigger = ({ type, noun, label, description, sample }) => {
  const key = triggerKey(type);

  const performSubscribe = async (z, bundle) => {
    const response = await z.request({
      url: apiUrl(bundle, '/api/v1/hooks'),
      method: 'POST',
      body: { target_url: bundle.targetUrl, event: type },
    });
    // Kept by Zapier as bundle.subscribeData: the id to unsubscribe, the secret to verify.
    return response.data;
  };

  const performUnsubscribe = async (z, bundle) => {
    const id = (bundle.subscribeData || {}).id;
    const response = await z.request({
      url: apiUrl(bundle, `/api/v1/hooks/${encodeURIComponent(id)}`),
      method: 'DELETE',
      skipThrowForStatus: true,
    });
    // 404: already gone (removed after Zapier answered 410, or by the merchant).
    if (response.status !== 204 && response.status !== 404) {
      response.throwForStatus();
    }
    return { id, removed: response.status === 204 };
  };

  // A delivery: only one signed with this subscription's secret triggers the Zap, and
  // only once per webhook-id (the product delivers at least once: a retry after an
  // answer that was lost, a replay, carry the same id), so the Zap's actions run once.
  const perform = async (z, bundle) => {
    const raw = bundle.rawRequest || {};
    const subscription = bundle.subscribeData || {};
    const now = Math.floor(Date.now() / 1000);
    if (!signatureValid(subscription.secret, raw.headers, raw.content || '', now)) {
      z.console.log(`${type}: a delivery without a valid signature was ignored`);
      return [];
    }
    // The event as signed (the raw body), not as Zapier parsed it.
    let event;
    try {
      event = JSON.parse(raw.content);
    } catch (e) {
      return [];
    }
    if (!event || event.type !== type) {
      return [];
    }
    const seen = `delivered:${subscription.id}:${header(raw.headers, 'webhook-id')}`;
    try {
      if (await z.cache.get(seen)) {
        z.console.log(`${type}: delivery ${event.id} seen before, ignored`);
        return [];
      }
      await z.cache.set(seen, true, SEEN_SECONDS);
    } catch (e) {
      // Without the cache the Zap may run twice for one event, never zero times.
      z.console.log(`${type}: could not check for a repeated delivery: ${e.message}`);
    }
    return [event];
  };

  const performList = async (z, bundle) => {
    const response = await z.request({
      url: apiUrl(bundle, `/api/v1/hooks/samples/${encodeURIComponent(type)}`),
    });
    return response.data.data;
  };

  return {
    key,
    noun,
    display: { label, description },
    operation: {
      type: 'hook',
      performSubscribe,
      performUnsubscribe,
      perform,
      performList,
      sample,
    },
  };
};

const triggers = Object.fromEntries(
  EVENT_TYPES.map((eventType) => [triggerKey(eventType.type), makeTrigger(eventType)]),
);

module.exports = { triggers, triggerKey, signatureValid };
