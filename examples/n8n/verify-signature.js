// Verifies dispatchd's Standard Webhooks signature before anything else runs.
// - The Webhook node must have the option "Raw Body" on (the signature covers the exact bytes).
// - The endpoint's secret (whsec_...) is in the environment variable DISPATCHD_WEBHOOK_SECRET.
// - n8n must allow the crypto module: NODE_FUNCTION_ALLOW_BUILTIN=crypto.
const crypto = require('crypto');
const secret = $env.DISPATCHD_WEBHOOK_SECRET;
if (!secret || !secret.startsWith('whsec_')) throw new Error('DISPATCHD_WEBHOOK_SECRET is not a whsec_ secret');
const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
const toleranceSeconds = 300;
const out = [];
const items = $input.all();
for (let i = 0; i < items.length; i++) {
  const headers = items[i].json.headers || {};
  const id = headers['webhook-id'];
  const timestamp = headers['webhook-timestamp'];
  const signatures = headers['webhook-signature'];
  if (!id || !timestamp || !signatures) throw new Error('missing webhook-id, webhook-timestamp or webhook-signature');
  const age = Math.abs(Math.floor(Date.now() / 1000) - Number(timestamp));
  if (!(age <= toleranceSeconds)) throw new Error('webhook-timestamp is too old or too new (replay?)');
  const raw = await this.helpers.getBinaryDataBuffer(i, 'data');
  const expected = crypto.createHmac('sha256', key).update(`${id}.${timestamp}.`).update(raw).digest();
  // During a secret rotation several signatures are sent; one valid one is enough.
  const valid = signatures.split(' ').some((s) => {
    const [version, b64] = s.split(',');
    if (version !== 'v1' || !b64) return false;
    const got = Buffer.from(b64, 'base64');
    return got.length === expected.length && crypto.timingSafeEqual(got, expected);
  });
  if (!valid) throw new Error('invalid webhook signature');
  const event = JSON.parse(raw.toString('utf8'));
  // webhook-id is the same on every retry: keep it to drop duplicates downstream.
  out.push({ json: { ...event, webhook_id: id } });
}
return out;
