// Drives sollold with the official JavaScript clients, as a user would.
// Usage: node clients.mjs http://127.0.0.1:PORT MODEL EMBED_MODEL
// Prints one JSON object with what each client saw; the Python test asserts.
import { Ollama } from 'ollama';
import OpenAI from 'openai';

const [base, model, embedModel] = process.argv.slice(2);
const ollama = new Ollama({ host: base });
const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused' });
const out = {};
const now = () => performance.now();

async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (e) {
    out[name] = { error: String(e && e.message ? e.message : e) };
  }
}

await step('ollama_chat_stream', async () => {
  const times = [];
  let text = '';
  let last = null;
  const stream = await ollama.chat({
    model,
    messages: [{ role: 'user', content: 'Say something' }],
    stream: true,
    options: { num_predict: 8 },
  });
  for await (const part of stream) {
    times.push(now());
    text += part.message.content;
    last = part;
  }
  return { chunks: times.length, spread_ms: times[times.length - 1] - times[0], text,
           done: last.done, eval_count: last.eval_count, done_reason: last.done_reason };
});

await step('ollama_chat', async () => {
  const r = await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }],
                                options: { num_predict: 4 } });
  return { content: r.message.content, done: r.done, eval_count: r.eval_count };
});

await step('ollama_generate', async () => {
  const r = await ollama.generate({ model, prompt: 'hello', options: { num_predict: 3 } });
  return { response: r.response, done: r.done, context: Array.isArray(r.context) };
});

await step('ollama_list', async () => {
  const r = await ollama.list();
  return { names: r.models.map((m) => m.name) };
});

await step('ollama_ps', async () => {
  const r = await ollama.ps();
  return { names: r.models.map((m) => m.name) };
});

await step('ollama_show', async () => {
  const r = await ollama.show({ model });
  return { has_details: !!r.details };
});

await step('ollama_embed', async () => {
  const r = await ollama.embed({ model: embedModel, input: ['one', 'two', 'three'] });
  return { count: r.embeddings.length, dim: r.embeddings[0].length };
});

await step('ollama_missing_model', async () => {
  try {
    await ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
    return { threw: false };
  } catch (e) {
    return { threw: true, status: e.status_code, message: e.error || e.message };
  }
});

await step('openai_chat', async () => {
  const r = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  return { object: r.object, content: r.choices[0].message.content,
           finish_reason: r.choices[0].finish_reason };
});

await step('openai_chat_stream', async () => {
  const times = [];
  let text = '';
  const stream = await openai.chat.completions.create({
    model, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8, stream: true });
  for await (const chunk of stream) {
    times.push(now());
    text += chunk.choices[0]?.delta?.content || '';
  }
  return { chunks: times.length, spread_ms: times[times.length - 1] - times[0], text };
});

await step('openai_models', async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  return { ids };
});

await step('openai_embeddings', async () => {
  const r = await openai.embeddings.create({ model: embedModel, input: ['a', 'b'] });
  return { count: r.data.length };
});

await step('openai_missing_model', async () => {
  try {
    await openai.chat.completions.create({ model: 'no-such-model',
                                           messages: [{ role: 'user', content: 'x' }] });
    return { threw: false };
  } catch (e) {
    return { threw: true, status: e.status };
  }
});

console.log(JSON.stringify(out));
