export class Counter {
  constructor(state) {
    this.storage = state.storage;
  }
  async fetch() {
    const value = ((await this.storage.get('value')) || 0) + 1;
    await this.storage.put('value', value);
    return new Response(String(value));
  }
}

export default {
  fetch(request, env) {
    return env.COUNTER.get(env.COUNTER.idFromName('bench')).fetch(request);
  },
};
