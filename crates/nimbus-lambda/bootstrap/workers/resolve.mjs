// Module resolve hook of the Workers host: `cloudflare:workers` is nimbus's shim.
const shim = new URL('./cloudflare-workers.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === 'cloudflare:workers') return { url: shim, shortCircuit: true };
  return next(specifier, context);
}
