// Cheap liveness endpoint for the container health check and the
// frontend target group: it never calls the API.
export const dynamic = "force-static";

export function GET() {
  return new Response("ok\n", {
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
  });
}
