import type { FastifyError, FastifyInstance } from 'fastify';

/**
 * One error shape for both services' APIs:
 *   { statusCode, error, code, message, details? }
 * Validation failures (fastify JSON schemas) are 400 VALIDATION with one
 * entry per violation: where (path), what (message), and the schema's
 * parameters, so a client can point at the field.
 */
export function installErrorHandler(app: FastifyInstance, known: (e: unknown) => { status: number; code: string } | undefined): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      const details = err.validation.map((v) => ({
        path: `${err.validationContext ?? 'body'}${v.instancePath || ''}`,
        message: v.message ?? 'invalid',
        params: v.params,
      }));
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', code: 'VALIDATION', message: details.map((d) => `${d.path} ${d.message}`).join('; '), details });
    }
    const k = known(err);
    if (k) return reply.code(k.status).send({ statusCode: k.status, error: httpName(k.status), code: k.code, message: err.message });
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ statusCode: err.statusCode, error: httpName(err.statusCode), code: err.code ?? 'BAD_REQUEST', message: err.message });
    req.log.error({ err }, 'request failed');
    return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', code: 'INTERNAL', message: err.message });
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', code: 'NO_ROUTE', message: `no route ${req.method} ${req.url.split('?')[0]}` }));
}

export function httpName(status: number): string {
  return (
    {
      400: 'Bad Request',
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'Not Found',
      409: 'Conflict',
      422: 'Unprocessable Entity',
      500: 'Internal Server Error',
      502: 'Bad Gateway',
      503: 'Service Unavailable',
      504: 'Gateway Timeout',
    } as Record<number, string>
  )[status] ?? 'Error';
}
