'use strict';

// Against a running app (started by tests/test_zapier.py: `chalice local` on the test
// stand-ins, with an account, its API key and one real outbox event):
//   ZAPIER_TEST_BASE_URL, ZAPIER_TEST_API_KEY, ZAPIER_TEST_SAMPLE_TYPE, ZAPIER_TEST_SAMPLE_ID,
//   ZAPIER_TEST_EMPTY_TYPE (a type the account has no event of), ZAPIER_TEST_DELIVERY (a
//   JSON file: a real delivery of the sample event to a hook, and its subscribe answer).

const crypto = require('crypto');
const fs = require('fs');
const zapier = require('zapier-platform-core');

const App = require('../index');
const EVENT_TYPES = require('../event-types.json');
const { signatureValid, triggerKey } = require('../triggers');

const appTester = zapier.createAppTester(App);

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through tests/test_zapier.py`);
  }
  return value;
};

const authData = () => ({
  base_url: env('ZAPIER_TEST_BASE_URL'),
  api_key: env('ZAPIER_TEST_API_KEY'),
});

const sign = (secret, id, timestamp, body) =>
  'v1,' +
  crypto
    .createHmac('sha256', Buffer.from(secret.replace(/^whsec_/, ''), 'base64'))
    .update(`${id}.${timestamp}.${body}`)
    .digest('base64');

// How Zapier hands a delivery to perform: headers prefixed `Http-`, the body as sent.
const delivery = (secret, event, { timestamp, tamper } = {}) => {
  const body = JSON.stringify(event);
  const ts = String(timestamp || Math.floor(Date.now() / 1000));
  const id = `msg_${crypto.randomBytes(8).toString('hex')}`;
  return {
    rawRequest: {
      method: 'POST',
      headers: {
        'Http-Webhook-Id': id,
        'Http-Webhook-Timestamp': ts,
        'Http-Webhook-Signature': sign(secret, id, ts, body),
        'Http-Content-Type': 'application/json',
      },
      content: tamper ? body.replace('"', ' "') : body,
    },
    cleanedRequest: event,
  };
};

jest.setTimeout(60000);

describe('the app definition', () => {
  test('has a hook trigger for every event type of the catalogue, from one list', () => {
    const keys = Object.keys(App.triggers);
    expect(keys.sort()).toEqual(EVENT_TYPES.map((e) => triggerKey(e.type)).sort());
    expect(new Set(keys).size).toBe(EVENT_TYPES.length);
    for (const { type } of EVENT_TYPES) {
      const { operation } = App.triggers[triggerKey(type)];
      expect(operation.type).toBe('hook');
      expect(operation.sample.type).toBe(type);
    }
  });

  test('the signature check passes the Standard Webhooks reference vector', () => {
    const headers = {
      'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
    };
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const body = '{"test": 2432232314}';
    expect(signatureValid(secret, headers, body, 1614265330)).toBe(true);
    // A second signature (a rotation) beside it still passes; a wrong one alone does not.
    headers['webhook-signature'] = 'v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
    expect(signatureValid(secret, headers, body, 1614265330)).toBe(true);
    headers['webhook-signature'] = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE';
    expect(signatureValid(secret, headers, body, 1614265330)).toBe(false);
    // Past the 5-minute tolerance: refused.
    headers['webhook-signature'] = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
    expect(signatureValid(secret, headers, body, 1614265330 + 301)).toBe(false);
  });
});

describe('authentication', () => {
  test('the connection test returns the key’s account', async () => {
    const account = await appTester(App.authentication.test, { authData: authData() });
    expect(account.account_id).toMatch(/^acct_/);
    expect(account.name).toBeTruthy();
    const label = await appTester(App.authentication.connectionLabel, {
      authData: authData(),
      inputData: account,
    });
    expect(label).toBe(account.name);
  });

  test('a wrong key is refused as an expired connection', async () => {
    const bundle = { authData: { ...authData(), api_key: 'bp_live_' + 'x'.repeat(43) } };
    await expect(appTester(App.authentication.test, bundle)).rejects.toThrow(/API key was refused/);
  });

  test('an http address other than loopback is refused before any request', async () => {
    const bundle = { authData: { ...authData(), base_url: 'http://billing.example.com' } };
    await expect(appTester(App.authentication.test, bundle)).rejects.toThrow(/https/);
  });
});

describe('REST hooks', () => {
  const sampleType = () => env('ZAPIER_TEST_SAMPLE_TYPE');

  test('subscribe, receive a signed delivery, list samples, unsubscribe', async () => {
    const trigger = App.triggers[triggerKey(sampleType())];
    const targetUrl = `https://hooks.zapier.com/hooks/standard/1/${crypto.randomUUID()}/`;
    const subscribeData = await appTester(trigger.operation.performSubscribe, {
      authData: authData(),
      targetUrl,
    });
    expect(subscribeData.id).toMatch(/^ep_/);
    expect(subscribeData.event).toBe(sampleType());
    expect(subscribeData.secret).toMatch(/^whsec_/);

    // Samples: the account's real event first (newest first), as a delivery would carry it.
    const samples = await appTester(trigger.operation.performList, { authData: authData() });
    expect(samples.length).toBeGreaterThanOrEqual(1);
    expect(samples[0].id).toBe(env('ZAPIER_TEST_SAMPLE_ID'));
    expect(samples[0].type).toBe(sampleType());
    expect(samples[0].example).toBeUndefined();

    // A delivery signed with the subscription's secret triggers the Zap with the event...
    const event = samples[0];
    const good = await appTester(trigger.operation.perform, {
      authData: authData(),
      subscribeData,
      ...delivery(subscribeData.secret, event),
    });
    expect(good).toEqual([event]);
    // ... one signed with another secret, changed on the way, or too old does not.
    const otherSecret = 'whsec_' + crypto.randomBytes(32).toString('base64');
    for (const bad of [
      delivery(otherSecret, event),
      delivery(subscribeData.secret, event, { tamper: true }),
      delivery(subscribeData.secret, event, { timestamp: Math.floor(Date.now() / 1000) - 3600 }),
    ]) {
      const result = await appTester(trigger.operation.perform, {
        authData: authData(),
        subscribeData,
        ...bad,
      });
      expect(result).toEqual([]);
    }
    // An event of another type on this subscription's URL does not trigger it either.
    const otherType = { ...event, type: 'not.this_one' };
    const misrouted = await appTester(trigger.operation.perform, {
      authData: authData(),
      subscribeData,
      ...delivery(subscribeData.secret, otherType),
    });
    expect(misrouted).toEqual([]);

    const removed = await appTester(trigger.operation.performUnsubscribe, {
      authData: authData(),
      subscribeData,
    });
    expect(removed).toEqual({ id: subscribeData.id, removed: true });
    // Zapier may unsubscribe again (or after the hook was removed on a 410): no error.
    const again = await appTester(trigger.operation.performUnsubscribe, {
      authData: authData(),
      subscribeData,
    });
    expect(again).toEqual({ id: subscribeData.id, removed: false });
  });

  test('a delivery the product really sent triggers the Zap with the sample’s fields', async () => {
    // Sent by the product's fan-out and attempt (signed by the standardwebhooks library)
    // to a hook subscribed through the API; headers as Zapier hands them over (`Http-`).
    const sent = JSON.parse(fs.readFileSync(env('ZAPIER_TEST_DELIVERY'), 'utf8'));
    const headers = Object.fromEntries(
      Object.entries(sent.headers).map(([name, value]) => [`Http-${name}`, value]),
    );
    const trigger = App.triggers[triggerKey(sampleType())];
    const bundle = {
      authData: authData(),
      subscribeData: sent.subscribeData,
      rawRequest: { method: 'POST', headers, content: sent.body },
      cleanedRequest: JSON.parse(sent.body),
    };
    const results = await appTester(trigger.operation.perform, bundle);
    expect(results).toHaveLength(1);
    expect(results[0].id).toBe(env('ZAPIER_TEST_SAMPLE_ID'));
    // The same delivery again (a retry whose answer was lost, a replay): the Zap ran once.
    expect(await appTester(trigger.operation.perform, bundle)).toEqual([]);
    // What Zapier showed while the Zap was built (the sample) has the same fields.
    const samples = await appTester(trigger.operation.performList, { authData: authData() });
    expect(results[0]).toEqual(samples.find((s) => s.id === results[0].id));
    // The same delivery under another subscription's secret does not trigger it.
    const stranger = { ...sent.subscribeData, secret: 'whsec_' + 'A'.repeat(44) };
    const refused = await appTester(trigger.operation.perform, {
      ...bundle,
      subscribeData: stranger,
    });
    expect(refused).toEqual([]);
  });

  test('a type with no event yet lists one example, marked as such', async () => {
    const type = env('ZAPIER_TEST_EMPTY_TYPE');
    const trigger = App.triggers[triggerKey(type)];
    const samples = await appTester(trigger.operation.performList, { authData: authData() });
    expect(samples).toHaveLength(1);
    expect(samples[0]).toMatchObject({ type, example: true });
    expect(samples[0].id).toBeTruthy();
  });

  test('subscribing with a refused key fails and subscribes nothing', async () => {
    const trigger = App.triggers[triggerKey(sampleType())];
    const bundle = {
      authData: { ...authData(), api_key: 'bp_live_' + 'y'.repeat(43) },
      targetUrl: 'https://hooks.zapier.com/hooks/standard/1/refused/',
    };
    await expect(appTester(trigger.operation.performSubscribe, bundle)).rejects.toThrow(
      /API key was refused/,
    );
  });
});
