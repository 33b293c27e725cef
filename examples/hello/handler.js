exports.handler = async (event, context) => {
  const name = event.queryStringParameters?.name || 'World';
  return {
    statusCode: 200,
    headers: { 'Content-Type': 'application/json', 'Access-Control-Allow-Origin': '*' },
    body: JSON.stringify({ message: `Hello, ${name}!`, timestamp: new Date().toISOString() })
  };
};
