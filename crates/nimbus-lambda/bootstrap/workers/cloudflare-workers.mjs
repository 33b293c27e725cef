// `cloudflare:workers` for workers run by nimbus: the base classes code extends and the
// `env` of the worker (the host puts it on globalThis before loading the module).
export class DurableObject {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class WorkerEntrypoint {
  constructor(ctx, env) {
    this.ctx = ctx;
    this.env = env;
  }
}

export class RpcTarget {}

export const env = globalThis.__nimbusWorkerEnv || {};
