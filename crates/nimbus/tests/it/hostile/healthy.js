exports.handler = async () => ({
  statusCode: 200,
  body: JSON.stringify({ ok: true, uid: process.getuid(), api: process.env.AWS_LAMBDA_RUNTIME_API }),
});
