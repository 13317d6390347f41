// rvec serve driven by the official OpenAI Node SDK (a client nobody here wrote):
// completions (string and token-id prompts, echo + logprobs), chat, streaming, /v1/models.
// Usage: node openai_sdk_test.mjs RVEC_BIN MODEL_DIR. Exits 77 (ctest SKIP) when the SDK is
// not installed (`npm ci` in this folder; tools/build.sh does it when npm exists).
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let OpenAI;
try {
  ({ default: OpenAI } = await import('openai'));
} catch {
  console.log('SKIP: the openai package is not installed (run `npm ci` in tests/serve/js)');
  process.exit(77);
}

const [bin, model] = process.argv.slice(2);
const dir = mkdtempSync(join(tmpdir(), 'rvec-serve-js-'));
const tpl = join(dir, 'chatml.jinja');
writeFileSync(tpl, "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + " +
  "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}");

const server = spawn(bin, ['serve', model, '--port', '0', '--served-model-name', 'tiny', '--api-key-env',
  'RVEC_TEST_KEY', '--chat-template', tpl], { env: { ...process.env, RVEC_TEST_KEY: 'js-key' },
  stdio: ['ignore', 'pipe', 'inherit'] });
const exited = new Promise((resolve) => server.on('exit', (code, sig) => resolve({ code, sig })));
const baseURL = await new Promise((resolve, reject) => {
  let buf = '';
  server.stdout.on('data', (d) => {
    buf += d;
    const m = buf.match(/^listening on (http:\/\/\S+)\n/);
    if (m) resolve(m[1] + '/v1');
  });
  setTimeout(() => reject(new Error('server did not start: ' + buf)), 30000);
});

const client = new OpenAI({ baseURL, apiKey: 'js-key', maxRetries: 0 });
try {
  // /v1/models
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.deepEqual(models, ['tiny']);

  // Completions: greedy is deterministic; a string prompt and its token ids agree.
  const a = await client.completions.create({ model: 'tiny', prompt: 'Hello there', max_tokens: 12, temperature: 0 });
  assert.equal(a.object, 'text_completion');
  assert.equal(a.choices.length, 1);
  assert.ok(['stop', 'length'].includes(a.choices[0].finish_reason));
  assert.equal(a.usage.total_tokens, a.usage.prompt_tokens + a.usage.completion_tokens);
  const tok = await (await fetch(baseURL.replace(/\/v1$/, '') + '/tokenize', {
    method: 'POST', headers: { Authorization: 'Bearer js-key', 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Hello there' }) })).json();
  const b = await client.completions.create({ model: 'tiny', prompt: tok.tokens, max_tokens: 12, temperature: 0 });
  assert.equal(b.choices[0].text, a.choices[0].text);

  // Echo + logprobs (lm-eval's log-likelihood request): one entry per prompt token, the first null.
  const e = await client.completions.create({ model: 'tiny', prompt: [tok.tokens], max_tokens: 1, temperature: 0,
    logprobs: 2, echo: true, seed: 1234 });
  const lp = e.choices[0].logprobs;
  assert.equal(lp.token_logprobs.length, tok.count + 1);
  assert.equal(lp.token_logprobs[0], null);
  assert.ok(e.choices[0].text.startsWith('Hello there'));
  const last = lp.token_logprobs.length - 1;  // the greedy generated token is its own top-1
  assert.equal(Math.max(...Object.values(lp.top_logprobs[last])), lp.token_logprobs[last]);

  // Streaming completions concatenate to the non-streamed text.
  let streamed = '';
  let finish = null;
  const s = await client.completions.create({ model: 'tiny', prompt: 'Hello there', max_tokens: 12, temperature: 0,
    stream: true });
  for await (const c of s) {
    for (const ch of c.choices) {
      streamed += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(streamed, a.choices[0].text);
  assert.equal(finish, a.choices[0].finish_reason);

  // Chat, plain and streamed, with logprobs.
  const messages = [{ role: 'user', content: 'Say something' }];
  const c1 = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0,
    logprobs: true, top_logprobs: 2 });
  assert.equal(c1.object, 'chat.completion');
  assert.equal(c1.choices[0].message.role, 'assistant');
  assert.ok(c1.choices[0].logprobs.content.length >= 1);
  for (const t of c1.choices[0].logprobs.content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].logprob, t.logprob);
    assert.ok(Array.isArray(t.bytes));
  }
  let chatStreamed = '';
  const cs = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 8, temperature: 0,
    stream: true });
  for await (const c of cs) chatStreamed += c.choices[0]?.delta?.content ?? '';
  assert.equal(chatStreamed, c1.choices[0].message.content);

  // Errors surface as the SDK's typed errors.
  await assert.rejects(client.completions.create({ model: 'other', prompt: 'x' }), (err) => err.status === 404);
  await assert.rejects(client.completions.create({ model: 'tiny', prompt: [99999] }), (err) => err.status === 400);
  const bad = new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 });
  await assert.rejects(bad.models.list(), (err) => err.status === 401);
  console.log('openai SDK: all checks passed');
} finally {
  server.kill('SIGTERM');
}
const { code } = await exited;
assert.equal(code, 0, 'rvec serve exits 0 on SIGTERM');
