// Drives sollold with real, unchanged npm clients of Ollama, as a user would:
// ollama-js (`ollama`), `openai`, `@langchain/ollama` and the AI SDK's Ollama
// provider (`ollama-ai-provider-v2` with `ai`).
//
// Usage: node clients.mjs CONFIG_JSON OUT_FILE
//   CONFIG_JSON: {"base": "http://127.0.0.1:PORT", "model", "embed_model",
//                 "pull_model", "lc_pull_model", "copy_model", "version",
//                 "time_scale"}  (waits stretched by time_scale, as under valgrind)
// Writes {"checks": [{client, call, ok, detail, ms}]} to OUT_FILE (stdout is
// not used: LangChain's checkOrPullModel logs pull progress there). Each
// check is what a user of that library would call and what they would rely
// on in its answer; tests/e2e/test_clients.py asserts every one.
import { writeFileSync } from 'node:fs';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { ChatOllama, OllamaEmbeddings } from '@langchain/ollama';
import { streamText, generateText, embedMany } from 'ai';
import { createOllama } from 'ollama-ai-provider-v2';

const cfg = JSON.parse(process.argv[2]);
const outFile = process.argv[3];
const { base, model, embed_model: embedModel } = cfg;
const ollama = new Ollama({ host: base });
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
const aisdk = createOllama({ baseURL: `${base}/api` });
const checks = [];
const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const scaled = (ms) => ms * (cfg.time_scale || 1);
// Under valgrind (time_scale > 1) the daemon's first requests are slow enough
// that a stream's chunks can pile up and arrive together: the spread of
// streamed chunks in time is checked only at full speed.
const slowed = (cfg.time_scale || 1) > 1;

class CheckFailed extends Error {}
function expect(cond, what) {
  if (!cond) throw new CheckFailed(what);
}

// Runs one check: fn returns a short detail on success and throws (through
// expect or the client itself) on failure.
async function check(client, call, fn) {
  const t0 = now();
  let ok = false;
  let detail;
  try {
    detail = String((await fn()) ?? '');
    ok = true;
  } catch (e) {
    const status = e && (e.status_code ?? e.status ?? e.statusCode);
    detail = (e instanceof CheckFailed ? '' : 'threw ') +
             (status ? `[${status}] ` : '') + String(e && e.message ? e.message : e);
  }
  checks.push({ client, call, ok, detail: detail.slice(0, 300), ms: Math.round(now() - t0) });
}

async function listNames() {
  return (await ollama.list()).models.map((m) => m.name);
}

// Polls fn() until it is true or `ms` pass (the aggregated routes are as
// fresh as the daemon's last probe).
async function eventually(fn, ms) {
  const end = now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (now() > end) return false;
    await sleep(100);
  }
}

// ---- ollama-js -------------------------------------------------------------

await check('ollama-js', 'chat stream', async () => {
  const times = [];
  let text = '';
  let last = null;
  const stream = await ollama.chat({
    model, messages: [{ role: 'user', content: 'Say something' }], stream: true,
    options: { num_predict: 8 },
  });
  for await (const part of stream) {
    times.push(now());
    text += part.message.content;
    last = part;
  }
  const spread = times[times.length - 1] - times[0];
  expect(times.length === 9, `9 chunks (8 tokens + done), got ${times.length}`);
  expect(last.done && last.eval_count === 8 && last.done_reason === 'length',
         `final chunk ${JSON.stringify(last)}`);
  expect(text.length > 0, 'no text');
  // 8 tokens 50 ms apart arrive over ~400 ms; a buffered answer arrives at
  // once. The margin absorbs a loaded machine's scheduling.
  expect(spread > 100 || slowed, `chunks arrived together (spread ${spread.toFixed(0)} ms)`);
  return `${times.length} chunks over ${spread.toFixed(0)} ms`;
});

await check('ollama-js', 'chat', async () => {
  const r = await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }],
                                options: { num_predict: 4 } });
  expect(r.message.role === 'assistant' && r.message.content && r.done,
         `answer ${JSON.stringify(r).slice(0, 200)}`);
  expect(r.eval_count === 4, `eval_count ${r.eval_count}`);
  return r.message.content;
});

await check('ollama-js', 'generate stream', async () => {
  let n = 0;
  let text = '';
  let last = null;
  for await (const part of await ollama.generate({ model, prompt: 'hello', stream: true,
                                                   options: { num_predict: 5 } })) {
    n++;
    text += part.response;
    last = part;
  }
  expect(n === 6 && last.done && Array.isArray(last.context), `${n} chunks, last ${JSON.stringify(last).slice(0, 200)}`);
  return `${n} chunks: ${text}`;
});

await check('ollama-js', 'generate', async () => {
  const r = await ollama.generate({ model, prompt: 'hello', options: { num_predict: 3 } });
  expect(r.response && r.done && Array.isArray(r.context), JSON.stringify(r).slice(0, 200));
  return r.response;
});

await check('ollama-js', 'embed', async () => {
  const r = await ollama.embed({ model: embedModel, input: ['one', 'two', 'three'] });
  expect(r.embeddings.length === 3, `${r.embeddings.length} embeddings`);
  const dim = r.embeddings[0].length;
  expect(dim > 0 && r.embeddings.every((e) => e.length === dim && e.every(Number.isFinite)),
         'ragged or non-numeric embeddings');
  return `3 x ${dim}`;
});

await check('ollama-js', 'list', async () => {
  const r = await ollama.list();
  const names = r.models.map((m) => m.name);
  for (const want of [model, cfg.model2, `${embedModel}:latest`])
    expect(names.includes(want), `${want} missing from ${names}`);
  expect(r.models.every((m) => m.digest && m.details && typeof m.size === 'number'),
         'entries lack digest/details/size');
  expect(new Set(names).size === names.length, `duplicates in ${names}`);
  return names.join(' ');
});

await check('ollama-js', 'ps', async () => {
  const r = await ollama.ps();
  const names = r.models.map((m) => m.name);
  expect(names.includes(model), `${model} not in ${names}`);
  // A client lists what is loaded: each model once (issue 17 item 8).
  expect(new Set(names).size === names.length, `a model listed more than once: ${names}`);
  return names.join(' ');
});

await check('ollama-js', 'show', async () => {
  const r = await ollama.show({ model });
  expect(r.details && r.details.family && r.model_info && Array.isArray(r.capabilities),
         `answer ${JSON.stringify(r).slice(0, 200)}`);
  expect(r.capabilities.includes('completion'), `capabilities ${r.capabilities}`);
  return `${r.details.family} ${r.details.parameter_size}`;
});

await check('ollama-js', 'version', async () => {
  const r = await ollama.version();
  // Clients gate features on this: the cluster's, not sollol's own.
  expect(r.version === cfg.version, `version ${r.version}, the nodes run ${cfg.version}`);
  return r.version;
});

await check('ollama-js', 'missing model error', async () => {
  try {
    await ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
  } catch (e) {
    expect(e.status_code === 404 && /not found/.test(e.error || e.message),
           `threw ${e.status_code} ${e.message}`);
    return `${e.status_code} ${e.error || e.message}`;
  }
  throw new CheckFailed('did not throw');
});

await check('ollama-js', 'abort stream', async () => {
  const client = new Ollama({ host: base });
  const stream = await client.chat({
    model, messages: [{ role: 'user', content: 'long' }], stream: true,
    options: { num_predict: 200 },
  });
  let n = 0;
  let aborted = false;
  try {
    for await (const part of stream) {
      n++;
      if (n === 2) stream.abort();
    }
  } catch (e) {
    aborted = e.name === 'AbortError';
    if (!aborted) throw e;
  }
  expect(aborted, `no AbortError after ${n} chunks`);
  // The daemon lets go of the node's stream when the client goes away.
  const released = await eventually(async () => {
    const h = await (await fetch(`${base}/api/health`)).json();
    return h.requests_live === 0;
  }, scaled(5000));
  expect(released, 'the aborted stream is still live in the daemon after 5 s');
  return `aborted after ${n} chunks, released`;
});

await check('ollama-js', 'copy', async () => {
  const r = await ollama.copy({ source: model, destination: cfg.copy_model });
  expect(r.status === 'success', JSON.stringify(r));
  return 'success';
});

await check('ollama-js', 'copied model usable at once', async () => {
  const names = await listNames();
  expect(names.includes(cfg.copy_model), `${cfg.copy_model} not listed: ${names}`);
  const r = await ollama.chat({ model: cfg.copy_model, messages: [{ role: 'user', content: 'hi' }],
                                options: { num_predict: 2 } });
  expect(r.done, 'no answer');
  return 'listed and answers';
});

let pullDone = false;
await check('ollama-js', 'pull with progress', async () => {
  const seen = new Map(); // digest -> last completed
  let backwards = null;
  let lines = 0;
  let progress = 0;
  const statuses = [];
  for await (const p of await ollama.pull({ model: cfg.pull_model, stream: true })) {
    lines++;
    statuses.push(p.status);
    if (p.digest && typeof p.completed === 'number') {
      progress++;
      const prev = seen.get(p.digest);
      if (prev !== undefined && p.completed < prev && !backwards)
        backwards = `${p.digest.slice(0, 19)} went from ${prev} to ${p.completed}`;
      seen.set(p.digest, p.completed);
    }
  }
  expect(statuses[statuses.length - 1] === 'success', `last status ${statuses[statuses.length - 1]}`);
  expect(statuses.filter((s) => s === 'success').length === 1, 'success reported more than once');
  pullDone = true;
  expect(progress > 0, 'no progress lines (digest, total, completed)');
  // A progress bar per digest must never move backwards (issue 17 item 7).
  expect(!backwards, `progress went backwards: ${backwards}`);
  return `${lines} lines, ${seen.size} digests, monotone`;
});

await check('ollama-js', 'pulled model usable at once', async () => {
  expect(pullDone, 'the pull failed');
  const names = await listNames();
  expect(names.includes(cfg.pull_model), `${cfg.pull_model} not listed: ${names}`);
  const r = await ollama.generate({ model: cfg.pull_model, prompt: 'x', options: { num_predict: 2 } });
  expect(r.done, 'no answer');
  return 'listed and answers';
});

let deleted = false;
await check('ollama-js', 'delete', async () => {
  const r = await ollama.delete({ model: cfg.copy_model });
  deleted = true;
  return r.status;
});

await check('ollama-js', 'deleted model gone', async () => {
  expect(deleted, 'the delete failed');
  const names = await listNames();
  expect(!names.includes(cfg.copy_model), `${cfg.copy_model} still listed`);
  return 'not listed';
});

// ---- openai ----------------------------------------------------------------

await check('openai', 'chat', async () => {
  const r = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  expect(r.object === 'chat.completion' && r.choices[0].message.content &&
         r.choices[0].finish_reason === 'length' && r.usage.completion_tokens === 4,
         JSON.stringify(r).slice(0, 300));
  return r.choices[0].message.content;
});

await check('openai', 'chat stream', async () => {
  const times = [];
  let text = '';
  let finish = null;
  const stream = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
  for await (const chunk of stream) {
    times.push(now());
    text += chunk.choices[0]?.delta?.content || '';
    finish = chunk.choices[0]?.finish_reason || finish;
  }
  const spread = times[times.length - 1] - times[0];
  expect(times.length >= 8 && text && finish === 'length', `${times.length} chunks, finish ${finish}`);
  expect(spread > 100 || slowed, `chunks arrived together (spread ${spread.toFixed(0)} ms)`);
  return `${times.length} chunks over ${spread.toFixed(0)} ms`;
});

let floats = null;
await check('openai', 'embeddings float', async () => {
  const r = await openai.embeddings.create({ model: embedModel, input: ['a', 'b'],
                                             encoding_format: 'float' });
  expect(r.object === 'list' && r.data.length === 2, JSON.stringify(r).slice(0, 200));
  const e = r.data.map((d) => d.embedding);
  expect(e.every((v) => Array.isArray(v) && v.length > 0 && v.every(Number.isFinite)),
         'not arrays of numbers');
  floats = e;
  return `2 x ${e[0].length}`;
});

await check('openai', 'embeddings base64 (SDK default)', async () => {
  // The SDK asks for base64 and decodes it; what it hands the user must be
  // the same vectors as the float answer.
  const r = await openai.embeddings.create({ model: embedModel, input: ['a', 'b'] });
  const e = r.data.map((d) => Array.from(d.embedding));
  expect(floats, 'no float embeddings to compare with');
  expect(e.length === 2 && e[0].length === floats[0].length,
         `got ${e.length} x ${e[0] && e[0].length}, float answer ${floats.length} x ${floats[0].length}`);
  const same = e.every((v, i) => v.every((x, j) => Math.abs(x - floats[i][j]) <= 1e-6 * (1 + Math.abs(x))));
  expect(same, 'decoded values differ from the float answer');
  return `2 x ${e[0].length}, equal to the float answer`;
});

await check('openai', 'models list', async () => {
  const ids = [];
  for await (const m of openai.models.list()) {
    expect(m.object === 'model' && typeof m.created === 'number' && m.owned_by, JSON.stringify(m));
    ids.push(m.id);
  }
  expect(ids.includes(model) && ids.includes(`${embedModel}:latest`), `ids ${ids}`);
  return ids.join(' ');
});

await check('openai', 'models retrieve', async () => {
  const m = await openai.models.retrieve(model);
  expect(m.id === model && m.object === 'model', JSON.stringify(m));
  return m.id;
});

await check('openai', 'models retrieve (name without tag)', async () => {
  const m = await openai.models.retrieve(embedModel);
  // Ollama echoes the name asked (issue 17 item 8).
  expect(m.id === embedModel, `id ${m.id} for ${embedModel}`);
  return m.id;
});

await check('openai', 'missing model error', async () => {
  try {
    await openai.chat.completions.create({ model: 'no-such-model',
                                           messages: [{ role: 'user', content: 'x' }] });
  } catch (e) {
    expect(e.status === 404 && e.error && e.error.message, `threw ${e.status} ${e.message}`);
    return `${e.status} ${e.error.message}`;
  }
  throw new CheckFailed('did not throw');
});

// ---- @langchain/ollama -------------------------------------------------------

await check('langchain', 'invoke', async () => {
  const chat = new ChatOllama({ baseUrl: base, model, numPredict: 4 });
  const r = await chat.invoke('hi');
  expect(typeof r.content === 'string' && r.content.length > 0, JSON.stringify(r.content));
  expect(r.usage_metadata && r.usage_metadata.output_tokens === 4,
         `usage ${JSON.stringify(r.usage_metadata)}`);
  return r.content;
});

await check('langchain', 'stream', async () => {
  const chat = new ChatOllama({ baseUrl: base, model, numPredict: 6 });
  let n = 0;
  let text = '';
  for await (const chunk of await chat.stream('hi')) {
    n++;
    text += chunk.content;
  }
  expect(n >= 6 && text.length > 0, `${n} chunks, text ${JSON.stringify(text)}`);
  return `${n} chunks`;
});

await check('langchain', 'embeddings', async () => {
  const emb = new OllamaEmbeddings({ baseUrl: base, model: embedModel });
  const docs = await emb.embedDocuments(['one', 'two']);
  const q = await emb.embedQuery('one');
  expect(docs.length === 2 && docs[0].length > 0 && q.length === docs[0].length,
         `${docs.length} docs, query ${q.length}`);
  return `2 x ${docs[0].length}`;
});

await check('langchain', 'checkOrPullModel', async () => {
  const chat = new ChatOllama({ baseUrl: base, model: cfg.lc_pull_model, numPredict: 3,
                                checkOrPullModel: true });
  const r = await chat.invoke('hi');
  expect(typeof r.content === 'string' && r.content.length > 0, JSON.stringify(r.content));
  return 'pulled and answered';
});

// ---- AI SDK (ollama-ai-provider-v2 + ai) --------------------------------------

await check('ai-sdk', 'streamText', async () => {
  const times = [];
  let text = '';
  // The provider passes maxOutputTokens as a top-level field Ollama ignores;
  // its users limit the length through Ollama's own options.
  const r = streamText({ model: aisdk(model), prompt: 'hi', onError: () => {},
                         providerOptions: { ollama: { options: { num_predict: 8 } } } });
  for await (const delta of r.textStream) {
    times.push(now());
    text += delta;
  }
  const finish = await r.finishReason;
  const usage = await r.usage;
  expect(text.length > 0 && times.length >= 2, `${times.length} deltas, text ${JSON.stringify(text)}`);
  expect(finish === 'length', `finishReason ${finish}`);
  expect(usage.outputTokens === 8, `usage ${JSON.stringify(usage)}`);
  const spread = times[times.length - 1] - times[0];
  expect(spread > 100 || slowed, `deltas arrived together (spread ${spread.toFixed(0)} ms)`);
  return `${times.length} deltas over ${spread.toFixed(0)} ms`;
});

await check('ai-sdk', 'generateText', async () => {
  const r = await generateText({ model: aisdk(model), prompt: 'hi',
                                 providerOptions: { ollama: { options: { num_predict: 4 } } } });
  expect(r.text.length > 0 && r.usage.outputTokens === 4, `text ${JSON.stringify(r.text)} usage ${JSON.stringify(r.usage)}`);
  return r.text;
});

await check('ai-sdk', 'embedMany', async () => {
  const r = await embedMany({ model: aisdk.embedding(embedModel), values: ['a', 'b', 'c'] });
  expect(r.embeddings.length === 3 && r.embeddings[0].length > 0, `${r.embeddings.length} embeddings`);
  return `3 x ${r.embeddings[0].length}`;
});

// ---- last: what changes the cluster's loaded state ----------------------------

await check('ollama-js', 'keep_alive 0 unloads everywhere', async () => {
  // What `ollama stop MODEL` sends; afterwards no node has it loaded.
  await ollama.generate({ model, prompt: '', keep_alive: 0 });
  const gone = await eventually(async () => {
    const r = await ollama.ps();
    return !r.models.some((m) => m.name === model);
  }, scaled(3000));
  expect(gone, `${model} still in /api/ps 3 s after keep_alive 0`);
  return 'unloaded';
});

writeFileSync(outFile, JSON.stringify({ checks }));
