export default {
  async fetch(request) {
    const name = new URL(request.url).searchParams.get('name') || 'World';
    return new Response(`Hello, ${name}!`, { headers: { 'content-type': 'text/plain' } });
  },
};
